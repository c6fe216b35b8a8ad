/* Dtypes and the plain tensor descriptor used across layers. A pc_tensor never owns its data: the data
 * belongs to an arena, a memory map or a method's parameter block (one owner per allocation). */
#ifndef PC_CORE_TENSOR_H
#define PC_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum pc_dtype {
    PC_F32 = 0,
    PC_F16,
    PC_BF16,
    PC_I32,
    PC_I64,
    PC_U8,
    PC_I8,
    PC_F64,
    PC_DTYPE_COUNT
} pc_dtype;

#define PC_MAX_DIMS 4

typedef struct pc_tensor {
    pc_dtype dtype;
    int ndim;
    int64_t shape[PC_MAX_DIMS];
    void *data;
} pc_tensor;

size_t pc_dtype_size(pc_dtype dt);
const char *pc_dtype_name(pc_dtype dt);          /* safetensors spelling: "F32", "BF16", ... */
int pc_dtype_from_name(const char *name, pc_dtype *out); /* 0 on success */

int64_t pc_tensor_numel(const pc_tensor *t);
size_t pc_tensor_bytes(const pc_tensor *t);
pc_tensor pc_tensor_2d(pc_dtype dt, int64_t rows, int64_t cols, void *data);
pc_tensor pc_tensor_1d(pc_dtype dt, int64_t n, void *data);

/* Scalar conversions. bf16 rounding is round-to-nearest-even, as torch does. */
static inline float pc_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
static inline uint16_t pc_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* quiet NaN */
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}
float pc_f16_to_f32(uint16_t h);
uint16_t pc_f32_to_f16(float f);

/* Convert n elements of src (dtype src_dt) to fp32 / bf16. */
void pc_convert_to_f32(float *dst, const void *src, pc_dtype src_dt, size_t n);
void pc_convert_to_bf16(uint16_t *dst, const void *src, pc_dtype src_dt, size_t n);
void pc_convert_from_f32(void *dst, pc_dtype dst_dt, const float *src, size_t n);

#endif
