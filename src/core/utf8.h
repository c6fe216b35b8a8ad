/* UTF-8 validation (RFC 3629: no overlong forms, no UTF-16 surrogates, nothing above U+10FFFF). */
#ifndef PC_CORE_UTF8_H
#define PC_CORE_UTF8_H

#include <stddef.h>

/* Length of the longest valid UTF-8 prefix of s[0..n): n when all of it is valid. */
size_t pc_utf8_valid_prefix(const char *s, size_t n);

#endif
