#include "core/tensor.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[PC_DTYPE_COUNT] = {
    [PC_F32] = {"F32", 4}, [PC_F16] = {"F16", 2}, [PC_BF16] = {"BF16", 2}, [PC_I32] = {"I32", 4},
    [PC_I64] = {"I64", 8}, [PC_U8] = {"U8", 1},   [PC_I8] = {"I8", 1},     [PC_F64] = {"F64", 8},
};

size_t pc_dtype_size(pc_dtype dt) { return dt < PC_DTYPE_COUNT ? dtype_info[dt].size : 0; }
const char *pc_dtype_name(pc_dtype dt) { return dt < PC_DTYPE_COUNT ? dtype_info[dt].name : "?"; }

int pc_dtype_from_name(const char *name, pc_dtype *out) {
    for (int i = 0; i < PC_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (pc_dtype)i;
            return 0;
        }
    }
    return -1;
}

int64_t pc_tensor_numel(const pc_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t pc_tensor_bytes(const pc_tensor *t) { return (size_t)pc_tensor_numel(t) * pc_dtype_size(t->dtype); }

pc_tensor pc_tensor_2d(pc_dtype dt, int64_t rows, int64_t cols, void *data) {
    pc_tensor t = {dt, 2, {rows, cols, 0, 0}, data};
    return t;
}

pc_tensor pc_tensor_1d(pc_dtype dt, int64_t n, void *data) {
    pc_tensor t = {dt, 1, {n, 0, 0, 0}, data};
    return t;
}

float pc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t pc_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, mant = x & 0x7fffff;
    int32_t exp = (int32_t)((x >> 23) & 0xff);
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    exp = exp - 127 + 15;
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (mant >> 13), rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)half;
}

void pc_convert_to_f32(float *dst, const void *src, pc_dtype src_dt, size_t n) {
    switch (src_dt) {
    case PC_F32: memmove(dst, src, n * 4); break;
    case PC_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = pc_bf16_to_f32(((const uint16_t *)src)[i]);
        break;
    case PC_F16:
        for (size_t i = 0; i < n; i++) dst[i] = pc_f16_to_f32(((const uint16_t *)src)[i]);
        break;
    case PC_F64:
        for (size_t i = 0; i < n; i++) dst[i] = (float)((const double *)src)[i];
        break;
    default:
        for (size_t i = 0; i < n; i++) dst[i] = 0.0f; /* callers reject non-float dtypes first */
    }
}

void pc_convert_to_bf16(uint16_t *dst, const void *src, pc_dtype src_dt, size_t n) {
    switch (src_dt) {
    case PC_BF16: memmove(dst, src, n * 2); break;
    case PC_F32:
        for (size_t i = 0; i < n; i++) dst[i] = pc_f32_to_bf16(((const float *)src)[i]);
        break;
    case PC_F16:
        for (size_t i = 0; i < n; i++) dst[i] = pc_f32_to_bf16(pc_f16_to_f32(((const uint16_t *)src)[i]));
        break;
    default:
        for (size_t i = 0; i < n; i++) dst[i] = 0;
    }
}

void pc_convert_from_f32(void *dst, pc_dtype dst_dt, const float *src, size_t n) {
    switch (dst_dt) {
    case PC_F32: memmove(dst, src, n * 4); break;
    case PC_BF16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = pc_f32_to_bf16(src[i]);
        break;
    case PC_F16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = pc_f32_to_f16(src[i]);
        break;
    case PC_F64:
        for (size_t i = 0; i < n; i++) ((double *)dst)[i] = src[i];
        break;
    default: break;
    }
}
