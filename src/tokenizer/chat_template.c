#include "tokenizer/tok_internal.h"
pc_status pc_tokenizer_render_chat(const pc_tokenizer *tk, const char *template_name, const pc_chat_message *msgs,
                                   int n_msgs, int add_generation_prompt, char **text, unsigned char **assistant_mask,
                                   size_t *len, pc_error *err) {
    return pc_fail(err, PC_ERR_UNSUPPORTED, "todo");
}
