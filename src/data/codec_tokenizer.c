/* The dataset loader's codec backed by a real tokenizer, and pc_dataset_load on top of it. Kept apart from
 * dataset.c so that the loader and its tests do not need the tokenizer library to link. */
#include "data/text_codec.h"

static pc_status tk_encode(const void *ctx, const char *text, size_t len, int add_special, int32_t **ids, size_t *n,
                           pc_error *err) {
    return pc_tokenizer_encode(ctx, text, len, add_special, ids, n, err);
}

static pc_status tk_decode(const void *ctx, const int32_t *ids, size_t n, char **text, size_t *len, pc_error *err) {
    return pc_tokenizer_decode(ctx, ids, n, 0, text, len, err);
}

static pc_status tk_render_chat(const void *ctx, const char *template_name, const pc_chat_message *msgs, int n_msgs,
                                char **text, unsigned char **assistant_mask, size_t *len, pc_error *err) {
    return pc_tokenizer_render_chat(ctx, template_name, msgs, n_msgs, 0, text, assistant_mask, len, err);
}

void pc_text_codec_from_tokenizer(pc_text_codec *codec, const pc_tokenizer *tk) {
    codec->ctx = tk;
    codec->encode = tk_encode;
    codec->decode = tk_decode;
    codec->render_chat = tk_render_chat;
    codec->bos_id = pc_tokenizer_bos_id(tk);
    codec->eos_id = pc_tokenizer_eos_id(tk);
}

pc_status pc_dataset_load(pc_dataset *ds, const char *path, const pc_tokenizer *tk, const pc_data_options *opt,
                          pc_error *err) {
    if (!tk) return pc_dataset_load_codec(ds, path, NULL, opt, err);
    pc_text_codec codec;
    pc_text_codec_from_tokenizer(&codec, tk);
    return pc_dataset_load_codec(ds, path, &codec, opt, err);
}
