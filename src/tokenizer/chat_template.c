/* Chat templates: peftc does not run Jinja. It recognises the common template families from the template
 * text and renders them exactly as the Jinja template would (transformers renders with trim_blocks and
 * lstrip_blocks), or refuses with a message saying which families it knows.
 *
 *   chatml  <|im_start|>{role}\n{content}<|im_end|>\n ...  (+ a default system message when the template has
 *           one, as SmolLM2-Instruct and Qwen2.5 do; Qwen3's <think> block on assistant turns after the last
 *           user turn)
 *   llama2  <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>   (roles alternate)
 *   llama3  <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|> ...
 *   zephyr  <|{role}|>\n{content}</s>\n ...  (Zephyr, TinyLlama-Chat)
 *
 * The assistant mask marks the bytes the model is trained to produce: each assistant turn's content and the
 * marker that ends the turn (<|im_end|>, </s>, <|eot_id|>), plus Qwen3's think wrapper. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

typedef enum { FAM_CHATML, FAM_LLAMA2, FAM_LLAMA3, FAM_ZEPHYR } chat_family;

typedef struct chat_style {
    chat_family family;
    char default_system[512]; /* chatml: used when the first message is not a system message */
    int has_default_system;
    int qwen3_think;          /* chatml: Qwen3's <think> rendering */
    int gen_prompt_always;    /* llama3 templates that append the header without add_generation_prompt */
} chat_style;

typedef struct out_buf {
    tk_bytes text, mask;
} out_buf;

static pc_status put(out_buf *o, const char *s, size_t n, int assistant, pc_error *err) {
    PC_TRY(tk_bytes_append(&o->text, s, n, err));
    PC_TRY(tk_bytes_reserve(&o->mask, n, err));
    memset(o->mask.p + o->mask.n, assistant ? 1 : 0, n);
    o->mask.n += n;
    return PC_OK;
}
static pc_status puts_(out_buf *o, const char *s, int assistant, pc_error *err) { return put(o, s, strlen(s), assistant, err); }

/* Python's str.isspace() for the code points a chat message may carry. */
static int py_space(int32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* str.strip(): [*a, *b) of s without leading and trailing whitespace. */
static void py_strip(const char *s, size_t *a, size_t *b) {
    size_t i = 0, n = strlen(s);
    while (i < n) {
        int32_t cp;
        int l = tk_utf8_decode((const unsigned char *)s + i, &cp);
        if (!py_space(cp)) break;
        i += (size_t)l;
    }
    size_t e = n;
    while (e > i) {
        size_t st = e - 1;
        while (st > i && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        int32_t cp;
        tk_utf8_decode((const unsigned char *)s + st, &cp);
        if (!py_space(cp)) break;
        e = st;
    }
    *a = i;
    *b = e;
}

/* The text of token id (bos/eos), or fallback when the tokenizer has none. */
static void token_copy(const pc_tokenizer *tk, int32_t id, const char *fallback, char *out, size_t cap) {
    if (!tk || id < 0 || id >= tk->vocab_size || tk->tok_len[id] == TK_NO_TOKEN) {
        snprintf(out, cap, "%s", fallback);
        return;
    }
    size_t n = tk->tok_len[id] < cap - 1 ? tk->tok_len[id] : cap - 1;
    memcpy(out, tk->tok_pool.p + tk->tok_off[id], n);
    out[n] = '\0';
}

/* ---- recognising a template ---- */

/* A literal default system prompt: "<|im_start|>system" + newline (escaped or real) + text without Jinja
 * expressions + "<|im_end|>". */
static void find_default_system(const char *tpl, chat_style *st) {
    const char *key = "<|im_start|>system";
    for (const char *p = strstr(tpl, key); p; p = strstr(p + 1, key)) {
        const char *q = p + strlen(key);
        if (q[0] == '\\' && q[1] == 'n') q += 2;
        else if (q[0] == '\n') q += 1;
        else continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end) continue;
        size_t n = 0;
        int literal = 1;
        for (const char *c = q; c < end; c++)
            if (*c == '\'' || *c == '"' || *c == '{' || *c == '}' || *c == '+') literal = 0;
        if (!literal || end == q) continue;
        for (const char *c = q; c < end && n + 1 < sizeof st->default_system; c++) {
            if (c[0] == '\\' && c[1] == 'n') {
                st->default_system[n++] = '\n';
                c++;
            } else {
                st->default_system[n++] = *c;
            }
        }
        st->default_system[n] = '\0';
        st->has_default_system = 1;
        return;
    }
}

static pc_status recognise(const char *tpl, chat_style *st, pc_error *err) {
    memset(st, 0, sizeof *st);
    if (strstr(tpl, "<|start_header_id|>") && strstr(tpl, "<|eot_id|>")) {
        if (strstr(tpl, "Cutting Knowledge Date") || strstr(tpl, "tools_in_user_message"))
            return pc_fail(err, PC_ERR_UNSUPPORTED, "chat_template: the Llama 3.1+ template (dates, tools) is not supported; "
                                                    "pass a family name ('llama3') to use the Llama 3 layout");
        st->family = FAM_LLAMA3;
        st->gen_prompt_always = strstr(tpl, "add_generation_prompt") == NULL;
        return PC_OK;
    }
    if (strstr(tpl, "<|im_start|>") && strstr(tpl, "<|im_end|>")) {
        st->family = FAM_CHATML;
        st->qwen3_think = strstr(tpl, "<think>") && strstr(tpl, "reasoning_content");
        find_default_system(tpl, st);
        return PC_OK;
    }
    if (strstr(tpl, "[INST]") && strstr(tpl, "<<SYS>>")) {
        st->family = FAM_LLAMA2;
        return PC_OK;
    }
    if (strstr(tpl, "<|user|>") && strstr(tpl, "<|assistant|>")) {
        st->family = FAM_ZEPHYR;
        return PC_OK;
    }
    return pc_fail(err, PC_ERR_UNSUPPORTED,
                   "chat_template: not a template family peftc recognises (chatml, llama2, llama3, zephyr); "
                   "pass one of those names to render with it");
}

static pc_status style_by_name(const char *name, chat_style *st, pc_error *err) {
    memset(st, 0, sizeof *st);
    if (!strcmp(name, "chatml")) st->family = FAM_CHATML;
    else if (!strcmp(name, "llama2")) st->family = FAM_LLAMA2;
    else if (!strcmp(name, "llama3")) st->family = FAM_LLAMA3;
    else if (!strcmp(name, "zephyr")) st->family = FAM_ZEPHYR;
    else return pc_fail(err, PC_ERR_USAGE, "chat template '%s': unknown family (chatml, llama2, llama3, zephyr)", name);
    return PC_OK;
}

/* ---- renderers ---- */

static pc_status check_role(const pc_chat_message *m, int i, pc_error *err) {
    if (!m->role || !m->content) return pc_fail(err, PC_ERR_FORMAT, "chat: message %d: missing role or content", i);
    if (strcmp(m->role, "system") && strcmp(m->role, "user") && strcmp(m->role, "assistant"))
        return pc_fail(err, PC_ERR_UNSUPPORTED, "chat: message %d: role '%s' is not supported (system, user, assistant)", i, m->role);
    return PC_OK;
}

static int is_role(const pc_chat_message *m, const char *r) { return !strcmp(m->role, r); }

/* Qwen3: content after '</think>' (left-stripped of newlines) and the reasoning before it. */
static void qwen3_split(const char *content, const char **body, size_t *body_n, const char **reason, size_t *reason_n) {
    const char *close = strstr(content, "</think>");
    *body = content;
    *body_n = strlen(content);
    *reason = "";
    *reason_n = 0;
    if (!close) return;
    /* content.split('</think>')[-1]: after the LAST occurrence */
    const char *last = close;
    for (const char *p = strstr(last + 1, "</think>"); p; p = strstr(p + 1, "</think>")) last = p;
    const char *b = last + 8;
    while (*b == '\n') b++;
    *body = b;
    *body_n = strlen(b);
    /* content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
    const char *r0 = content, *r1 = close;
    while (r1 > r0 && r1[-1] == '\n') r1--;
    for (const char *p = r0; (p = strstr(p, "<think>")) && p < r1; p += 7) r0 = p + 7;
    while (r0 < r1 && *r0 == '\n') r0++;
    *reason = r0;
    *reason_n = (size_t)(r1 - r0);
}

static pc_status render_chatml(const chat_style *st, const pc_chat_message *m, int n, int gen, out_buf *o, pc_error *err) {
    if (st->has_default_system && (n == 0 || !is_role(&m[0], "system"))) {
        PC_TRY(puts_(o, "<|im_start|>system\n", 0, err));
        PC_TRY(puts_(o, st->default_system, 0, err));
        PC_TRY(puts_(o, "<|im_end|>\n", 0, err));
    }
    int last_query = n - 1;
    for (int i = n - 1; i >= 0; i--)
        if (is_role(&m[i], "user")) {
            last_query = i;
            break;
        }
    for (int i = 0; i < n; i++) {
        int asst = is_role(&m[i], "assistant");
        PC_TRY(puts_(o, "<|im_start|>", 0, err));
        PC_TRY(puts_(o, m[i].role, 0, err));
        PC_TRY(puts_(o, "\n", 0, err));
        if (asst && st->qwen3_think) {
            const char *body, *reason;
            size_t bn, rn;
            qwen3_split(m[i].content, &body, &bn, &reason, &rn);
            if (i > last_query && (i == n - 1 || rn > 0)) {
                while (rn > 0 && reason[0] == '\n') reason++, rn--; /* reasoning_content.strip('\n') */
                while (rn > 0 && reason[rn - 1] == '\n') rn--;
                PC_TRY(puts_(o, "<think>\n", 1, err));
                PC_TRY(put(o, reason, rn, 1, err));
                PC_TRY(puts_(o, "\n</think>\n\n", 1, err));
                while (bn > 0 && body[0] == '\n') body++, bn--;
            }
            PC_TRY(put(o, body, bn, 1, err));
        } else {
            PC_TRY(puts_(o, m[i].content, asst, err));
        }
        PC_TRY(puts_(o, "<|im_end|>", asst, err));
        PC_TRY(puts_(o, "\n", 0, err));
    }
    if (gen) PC_TRY(puts_(o, "<|im_start|>assistant\n", 0, err));
    return PC_OK;
}

static pc_status render_llama2(const pc_tokenizer *tk, const pc_chat_message *m, int n, out_buf *o, pc_error *err) {
    char bos[64], eos[64];
    token_copy(tk, tk ? tk->bos_id : -1, "<s>", bos, sizeof bos);
    token_copy(tk, tk ? tk->eos_id : -1, "</s>", eos, sizeof eos);
    const char *system = NULL;
    int start = 0;
    if (n > 0 && is_role(&m[0], "system")) {
        system = m[0].content;
        start = 1;
    }
    for (int i = start; i < n; i++) {
        int k = i - start;
        if (is_role(&m[i], "user") != (k % 2 == 0))
            return pc_fail(err, PC_ERR_FORMAT, "chat: Conversation roles must alternate user/assistant/user/assistant/... (message %d)", i);
        if (is_role(&m[i], "system"))
            return pc_fail(err, PC_ERR_FORMAT, "chat: message %d: a system message is only allowed first", i);
        tk_bytes content = {0};
        pc_status s = PC_OK;
        if (k == 0 && system) {
            s = tk_bytes_append(&content, "<<SYS>>\n", 8, err);
            if (s == PC_OK) s = tk_bytes_append(&content, system, strlen(system), err);
            if (s == PC_OK) s = tk_bytes_append(&content, "\n<</SYS>>\n\n", 11, err);
        }
        if (s == PC_OK) s = tk_bytes_append(&content, m[i].content, strlen(m[i].content), err);
        size_t a = 0, b = 0;
        if (s == PC_OK) py_strip(content.p, &a, &b);
        if (s == PC_OK && is_role(&m[i], "user")) {
            s = puts_(o, bos, 0, err);
            if (s == PC_OK) s = puts_(o, "[INST] ", 0, err);
            if (s == PC_OK) s = put(o, content.p + a, b - a, 0, err);
            if (s == PC_OK) s = puts_(o, " [/INST]", 0, err);
        } else if (s == PC_OK) {
            s = puts_(o, " ", 0, err);
            if (s == PC_OK) s = put(o, content.p + a, b - a, 1, err);
            if (s == PC_OK) s = puts_(o, " ", 1, err);
            if (s == PC_OK) s = puts_(o, eos, 1, err);
        }
        tk_bytes_free(&content);
        PC_TRY(s);
    }
    return PC_OK;
}

static pc_status render_llama3(const pc_tokenizer *tk, const chat_style *st, const pc_chat_message *m, int n, int gen,
                               out_buf *o, pc_error *err) {
    char bos[64];
    token_copy(tk, tk ? tk->bos_id : -1, "<|begin_of_text|>", bos, sizeof bos);
    for (int i = 0; i < n; i++) {
        int asst = is_role(&m[i], "assistant");
        if (i == 0) PC_TRY(puts_(o, bos, 0, err));
        PC_TRY(puts_(o, "<|start_header_id|>", 0, err));
        PC_TRY(puts_(o, m[i].role, 0, err));
        PC_TRY(puts_(o, "<|end_header_id|>\n\n", 0, err));
        size_t a, b;
        py_strip(m[i].content, &a, &b);
        PC_TRY(put(o, m[i].content + a, b - a, asst, err));
        PC_TRY(puts_(o, "<|eot_id|>", asst, err));
    }
    if (gen || st->gen_prompt_always) PC_TRY(puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n", 0, err));
    return PC_OK;
}

static pc_status render_zephyr(const pc_tokenizer *tk, const pc_chat_message *m, int n, int gen, out_buf *o, pc_error *err) {
    char eos[64];
    token_copy(tk, tk ? tk->eos_id : -1, "</s>", eos, sizeof eos);
    for (int i = 0; i < n; i++) {
        int asst = is_role(&m[i], "assistant");
        PC_TRY(puts_(o, asst ? "<|assistant|>\n" : is_role(&m[i], "user") ? "<|user|>\n" : "<|system|>\n", 0, err));
        PC_TRY(puts_(o, m[i].content, asst, err));
        PC_TRY(puts_(o, eos, asst, err));
        PC_TRY(puts_(o, "\n", 0, err));
        if (i == n - 1 && gen) PC_TRY(puts_(o, "<|assistant|>\n", 0, err));
    }
    return PC_OK;
}

pc_status pc_tokenizer_render_chat(const pc_tokenizer *tk, const char *template_name, const pc_chat_message *msgs,
                                   int n_msgs, int add_generation_prompt, char **text, unsigned char **assistant_mask,
                                   size_t *len, pc_error *err) {
    *text = NULL;
    *len = 0;
    if (assistant_mask) *assistant_mask = NULL;
    chat_style st;
    if (template_name) PC_TRY(style_by_name(template_name, &st, err));
    else if (tk && tk->chat_template) PC_TRY(recognise(tk->chat_template, &st, err));
    else return pc_fail(err, PC_ERR_USAGE, "chat: the tokenizer has no chat_template; name a family (chatml, llama2, llama3, zephyr)");
    for (int i = 0; i < n_msgs; i++) PC_TRY(check_role(&msgs[i], i, err));
    out_buf o = {{0}, {0}};
    pc_status s;
    switch (st.family) {
    case FAM_CHATML: s = render_chatml(&st, msgs, n_msgs, add_generation_prompt, &o, err); break;
    case FAM_LLAMA2: s = render_llama2(tk, msgs, n_msgs, &o, err); break;
    case FAM_LLAMA3: s = render_llama3(tk, &st, msgs, n_msgs, add_generation_prompt, &o, err); break;
    default: s = render_zephyr(tk, msgs, n_msgs, add_generation_prompt, &o, err); break;
    }
    if (s == PC_OK) s = tk_bytes_reserve(&o.text, 0, err);
    if (s == PC_OK) s = tk_bytes_reserve(&o.mask, 0, err);
    if (s != PC_OK) {
        tk_bytes_free(&o.text);
        tk_bytes_free(&o.mask);
        return s;
    }
    o.text.p[o.text.n] = '\0';
    *text = o.text.p;
    *len = o.text.n;
    if (assistant_mask) *assistant_mask = (unsigned char *)o.mask.p;
    else tk_bytes_free(&o.mask);
    return PC_OK;
}
