/* Writing a model directory that peftc and transformers load: config.json, model.safetensors in the
 * requested dtype and the architecture's on-disk layout, and the tokenizer files of the source. */
#include <string.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/model.h"


/* One converted copy of a tensor in the file's dtype and layout; freed by the caller. */
static void *file_copy(const pc_param *p, pc_dtype dtype) {
    size_t n = (size_t)pc_tensor_numel(&p->t);
    float *f = pc_malloc(n * sizeof(float));
    void *out = pc_malloc(n * pc_dtype_size(dtype));
    if (!f || !out) {
        pc_free(f);
        pc_free(out);
        return NULL;
    }
    pc_convert_to_f32(f, p->t.data, p->t.dtype, n);
    if (p->transposed) { /* [out,in] → [in,out] */
        int64_t rows = p->t.shape[0], cols = p->t.shape[1];
        float *tr = pc_malloc(n * sizeof(float));
        if (!tr) {
            pc_free(f);
            pc_free(out);
            return NULL;
        }
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) tr[(size_t)c * rows + r] = f[(size_t)r * cols + c];
        pc_free(f);
        f = tr;
    }
    pc_convert_from_f32(out, dtype, f, n);
    pc_free(f);
    return out;
}

pc_status pc_model_save(const pc_model *m, const char *dir, pc_dtype dtype, pc_error *err) {
    if (dtype != PC_F32 && dtype != PC_BF16 && dtype != PC_F16)
        return pc_fail(err, PC_ERR_USAGE, "cannot save a model in %s", pc_dtype_name(dtype));
    PC_TRY(pc_mkdir_p(dir, err));
    char path[4096];
    void **copies = pc_calloc((size_t)m->n_params, sizeof *copies);
    if (!copies) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    pc_st_writer w;
    pc_st_writer_init(&w);
    pc_status st = pc_st_writer_meta(&w, "format", "pt", err);
    for (int i = 0; i < m->n_params && st == PC_OK; i++) {
        const pc_param *p = &m->params[i];
        copies[i] = file_copy(p, p->t.ndim == 2 ? dtype : (dtype == PC_F16 ? PC_F16 : dtype));
        if (!copies[i]) {
            st = pc_fail(err, PC_ERR_NOMEM, "out of memory writing '%s'", p->name);
            break;
        }
        int64_t shape[2] = {p->t.shape[0], p->t.shape[1]};
        if (p->transposed) {
            shape[0] = p->t.shape[1];
            shape[1] = p->t.shape[0];
        }
        st = pc_st_writer_add(&w, p->name, dtype, p->t.ndim, shape, copies[i], err);
    }
    if (st == PC_OK && pc_path_join(path, sizeof path, dir, "model.safetensors")) st = pc_fail(err, PC_ERR_USAGE, "%s: path too long", dir);
    if (st == PC_OK) st = pc_st_writer_write(&w, path, err);
    pc_st_writer_free(&w);
    for (int i = 0; i < m->n_params; i++) pc_free(copies[i]);
    pc_free(copies);
    if (st == PC_OK && m->config_path) {
        if (pc_path_join(path, sizeof path, dir, "config.json")) return pc_fail(err, PC_ERR_USAGE, "%s: path too long", dir);
        st = pc_copy_file_atomic(m->config_path, path, err);
    }
    if (st == PC_OK && m->dir) st = pc_copy_tokenizer_files(m->dir, dir, err);
    return st;
}
