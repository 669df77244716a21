/* Standalone driver for the check kernel, built with ASan/UBSan by
 * tests/test_kernel_sanitizer.py:
 *
 *   gcc -fsanitize=address,undefined -fno-sanitize-recover=all -g -O1 \
 *       tests/kernel_sanitizer_driver.c validator/_fastcheck.c -o driver
 *
 * Every buffer handed to the kernel is a heap block of exactly the size the
 * API allows, so any overrun is reported. Known-answer vectors are checked
 * here, once per CPU path this machine has (fc_set_path); then every
 * non-portable path is compared with the portable one on window lengths
 * that are not multiples of the SIMD batch (tails), counters whose high word
 * changes inside a batch, the top of the 64-bit range, and multi-key calls.
 * Prints "OK" and exits 0 when everything passes.
 */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../validator/_fastcheck.h"

static long failures = 0;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            if (failures < 50)                                               \
                fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,       \
                        __LINE__, #cond);                                    \
            failures++;                                                      \
        }                                                                    \
    } while (0)

static const int ALGS[3] = {FC_SHA1, FC_SHA256, FC_SHA512};

static void *xmalloc(size_t n)
{
    /* malloc(0) may legally return NULL; ask for a real 0-byte block. */
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* A heap copy of exactly n bytes (n >= 1). */
static uint8_t *heap_bytes(const void *src, size_t n)
{
    uint8_t *p = (uint8_t *)xmalloc(n);
    memcpy(p, src, n);
    return p;
}

static fc_key *new_key(int alg, const uint8_t *key, size_t len, int digits)
{
    fc_key *k = (fc_key *)xmalloc(sizeof *k);
    uint8_t *kb = heap_bytes(key, len);
    int rc = fc_key_init(k, alg, kb, len, digits);
    CHECK(rc == FC_OK);
    free(kb);
    return k;
}

static uint32_t code_at(const fc_key *k, uint64_t c)
{
    uint32_t *o = (uint32_t *)xmalloc(sizeof *o);
    uint32_t v;
    CHECK(fc_generate(k, c, 1, o) == FC_OK);
    v = *o;
    free(o);
    return v;
}

static uint32_t pow10u(int d)
{
    uint32_t m = 1;
    while (d-- > 0)
        m *= 10;
    return m;
}

/* ---- known answers ---------------------------------------------------- */

static void test_rfc4226(void)
{
    static const uint32_t expect[10] = {755224, 287082, 359152, 969429,
                                        338314, 254676, 287922, 162583,
                                        399871, 520489};
    const char *key = "12345678901234567890";
    fc_key *k = new_key(FC_SHA1, (const uint8_t *)key, 20, 6);
    uint32_t *out = (uint32_t *)xmalloc(10 * sizeof *out);
    uint64_t c;

    CHECK(fc_generate(k, 0, 10, out) == FC_OK);
    for (c = 0; c < 10; c++) {
        CHECK(out[c] == expect[c]);
        CHECK(code_at(k, c) == expect[c]);
    }
    free(out);
    free(k);
}

static void test_rfc6238(void)
{
    static const char k1[] = "12345678901234567890";
    static const char k2[] = "12345678901234567890123456789012";
    static const char k3[] = "1234567890123456789012345678901234567890"
                             "123456789012345678901234";
    static const struct {
        uint64_t t;
        uint32_t sha1, sha256, sha512;
    } v[] = {
        {59u, 94287082u, 46119246u, 90693936u},
        {1111111109u, 7081804u, 68084774u, 25091201u},
        {1111111111u, 14050471u, 67062674u, 99943326u},
        {1234567890u, 89005924u, 91819424u, 93441116u},
        {2000000000u, 69279037u, 90698825u, 38618901u},
        {UINT64_C(20000000000), 65353130u, 77737706u, 47863826u},
    };
    fc_key *ka = new_key(FC_SHA1, (const uint8_t *)k1, 20, 8);
    fc_key *kb = new_key(FC_SHA256, (const uint8_t *)k2, 32, 8);
    fc_key *kc = new_key(FC_SHA512, (const uint8_t *)k3, 64, 8);
    size_t i;

    CHECK(sizeof k3 - 1 == 64);
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint64_t T = v[i].t / 30;
        CHECK(code_at(ka, T) == v[i].sha1);
        CHECK(code_at(kb, T) == v[i].sha256);
        CHECK(code_at(kc, T) == v[i].sha512);
    }
    free(ka);
    free(kb);
    free(kc);
}

/* Raw 31-bit values (digits = 10) for key[i] = (uint8_t)(31 * i + 7),
 * counters 0 and 0xFEDCBA9876543210, computed with Python's hmac module.
 * Lengths straddle the block sizes, so hashed-key HMAC is covered. */
static const struct {
    int alg;
    size_t len;
    uint32_t at0, atbig;
} LONGKEYS[] = {
    {FC_SHA1,   1, UINT32_C(1976961268), UINT32_C( 807303800)},
    {FC_SHA1,  19, UINT32_C( 386066023), UINT32_C(1825649560)},
    {FC_SHA1,  20, UINT32_C(1586726935), UINT32_C( 614433704)},
    {FC_SHA1,  32, UINT32_C(1369361397), UINT32_C( 186661314)},
    {FC_SHA1,  55, UINT32_C(1349413645), UINT32_C(1964211087)},
    {FC_SHA1,  56, UINT32_C(1610704669), UINT32_C(2061318625)},
    {FC_SHA1,  63, UINT32_C(1158001037), UINT32_C( 984096446)},
    {FC_SHA1,  64, UINT32_C(1286018540), UINT32_C( 112863432)},
    {FC_SHA1,  65, UINT32_C(1549134273), UINT32_C( 598192482)},
    {FC_SHA1, 111, UINT32_C(1920092876), UINT32_C(1478493080)},
    {FC_SHA1, 112, UINT32_C(1473353061), UINT32_C(1905926042)},
    {FC_SHA1, 127, UINT32_C( 229098268), UINT32_C(1233363227)},
    {FC_SHA1, 128, UINT32_C(1663386321), UINT32_C( 902826232)},
    {FC_SHA1, 129, UINT32_C( 517131325), UINT32_C( 878848701)},
    {FC_SHA1, 200, UINT32_C(1422977386), UINT32_C(1787735455)},
    {FC_SHA256,   1, UINT32_C(1986404151), UINT32_C( 842010915)},
    {FC_SHA256,  19, UINT32_C( 880252385), UINT32_C( 903572528)},
    {FC_SHA256,  20, UINT32_C(1044393093), UINT32_C(  88252619)},
    {FC_SHA256,  32, UINT32_C(1323538242), UINT32_C( 498144656)},
    {FC_SHA256,  55, UINT32_C(1489901070), UINT32_C(1953462178)},
    {FC_SHA256,  56, UINT32_C( 843522348), UINT32_C(1966408058)},
    {FC_SHA256,  63, UINT32_C( 365377785), UINT32_C( 179243090)},
    {FC_SHA256,  64, UINT32_C(1920692421), UINT32_C( 897955115)},
    {FC_SHA256,  65, UINT32_C( 182655357), UINT32_C(1998474618)},
    {FC_SHA256, 111, UINT32_C( 449358820), UINT32_C( 828523923)},
    {FC_SHA256, 112, UINT32_C(  64492343), UINT32_C( 207683378)},
    {FC_SHA256, 127, UINT32_C( 757810212), UINT32_C(1912807999)},
    {FC_SHA256, 128, UINT32_C(1720981816), UINT32_C( 703003157)},
    {FC_SHA256, 129, UINT32_C( 655398952), UINT32_C( 569624657)},
    {FC_SHA256, 200, UINT32_C(2128554697), UINT32_C(1084288088)},
    {FC_SHA512,   1, UINT32_C( 896917566), UINT32_C(1489020271)},
    {FC_SHA512,  19, UINT32_C( 138227911), UINT32_C( 586995601)},
    {FC_SHA512,  20, UINT32_C( 657959329), UINT32_C(1862825344)},
    {FC_SHA512,  32, UINT32_C( 910090261), UINT32_C(1447702981)},
    {FC_SHA512,  55, UINT32_C(  49264364), UINT32_C( 313824301)},
    {FC_SHA512,  56, UINT32_C(1982803160), UINT32_C( 586974662)},
    {FC_SHA512,  63, UINT32_C(1957569665), UINT32_C( 848519713)},
    {FC_SHA512,  64, UINT32_C( 738574716), UINT32_C(1885682995)},
    {FC_SHA512,  65, UINT32_C(1492271748), UINT32_C( 763754063)},
    {FC_SHA512, 111, UINT32_C(2117985739), UINT32_C(1799432708)},
    {FC_SHA512, 112, UINT32_C(1926376429), UINT32_C(2023216521)},
    {FC_SHA512, 127, UINT32_C(1946952013), UINT32_C( 510156316)},
    {FC_SHA512, 128, UINT32_C(1749403885), UINT32_C(1117740182)},
    {FC_SHA512, 129, UINT32_C(2092256656), UINT32_C( 668253780)},
    {FC_SHA512, 200, UINT32_C(1577438895), UINT32_C( 201948605)},
};

static void key_pattern(uint8_t *buf, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        buf[i] = (uint8_t)(31 * i + 7);
}

static void test_long_keys(void)
{
    uint8_t buf[256];
    size_t i;
    int d;

    for (i = 0; i < sizeof LONGKEYS / sizeof LONGKEYS[0]; i++) {
        key_pattern(buf, LONGKEYS[i].len);
        for (d = FC_MIN_DIGITS; d <= FC_MAX_DIGITS; d++) {
            fc_key *k = new_key(LONGKEYS[i].alg, buf, LONGKEYS[i].len, d);
            uint32_t m = d == 10 ? UINT32_C(0x80000000) : pow10u(d);
            CHECK(code_at(k, 0) == LONGKEYS[i].at0 % m);
            CHECK(code_at(k, UINT64_C(0xFEDCBA9876543210)) ==
                  LONGKEYS[i].atbig % m);
            free(k);
        }
    }
}

/* ---- find / find_pair against brute force ------------------------------ */

#define SENTINEL UINT64_C(0xA5A5A5A5DEADBEEF)

/* codes[i] = code(c0 + i) for i < n. */
static void check_find(const fc_key *k, uint64_t c0, size_t n, uint32_t code,
                       const uint32_t *codes)
{
    size_t expect = 0, i, v;
    const size_t maxes[3] = {0, 1, n + 3};

    for (i = 0; i < n; i++)
        expect += codes[i] == code;
    CHECK(fc_find(k, c0, n, code, NULL, 0) == (int64_t)expect);

    for (v = 0; v < 3; v++) {
        size_t max = maxes[v], alloc = max ? max : 1, j = 0, kept;
        uint64_t *m = (uint64_t *)xmalloc(alloc * sizeof *m);
        int64_t r;

        for (i = 0; i < alloc; i++)
            m[i] = SENTINEL;
        r = fc_find(k, c0, n, code, m, max);
        CHECK(r == (int64_t)expect);
        for (i = 0; i < n; i++) {
            if (codes[i] == code) {
                if (j < max)
                    CHECK(m[j] == c0 + i);
                j++;
            }
        }
        kept = expect < max ? expect : max;
        for (i = kept; i < alloc; i++)
            CHECK(m[i] == SENTINEL);
        free(m);
    }
}

/* codes[i] = code(c0 + i) for i <= n (n + 1 codes). */
static void check_pair(const fc_key *k, uint64_t c0, size_t n, uint32_t c1,
                       uint32_t c2, const uint32_t *codes)
{
    size_t expect = 0, i, v;
    const size_t maxes[3] = {0, 1, n + 3};

    for (i = 0; i < n; i++)
        expect += codes[i] == c1 && codes[i + 1] == c2;
    CHECK(fc_find_pair(k, c0, n, c1, c2, NULL, 0) == (int64_t)expect);

    for (v = 0; v < 3; v++) {
        size_t max = maxes[v], alloc = max ? max : 1, j = 0, kept;
        uint64_t *m = (uint64_t *)xmalloc(alloc * sizeof *m);
        int64_t r;

        for (i = 0; i < alloc; i++)
            m[i] = SENTINEL;
        r = fc_find_pair(k, c0, n, c1, c2, m, max);
        CHECK(r == (int64_t)expect);
        for (i = 0; i < n; i++) {
            if (codes[i] == c1 && codes[i + 1] == c2) {
                if (j < max)
                    CHECK(m[j] == c0 + i);
                j++;
            }
        }
        kept = expect < max ? expect : max;
        for (i = kept; i < alloc; i++)
            CHECK(m[i] == SENTINEL);
        free(m);
    }
}

/* Generate n codes (and n + 1 for pairs) in exact-size buffers, compare
 * with single-code calls and the 10-digit value, and run find/find_pair. */
static void check_window(const fc_key *k, const fc_key *k10, uint64_t c0,
                         size_t n)
{
    uint32_t *out = (uint32_t *)xmalloc(n * sizeof *out);
    uint32_t *out1 = (uint32_t *)xmalloc((n + 1) * sizeof *out1);
    uint32_t m = k->digits == 10 ? 0 : pow10u(k->digits);
    size_t i;

    CHECK(fc_generate(k, c0, n, out) == FC_OK);
    CHECK(fc_generate(k, c0, n + 1, out1) == FC_OK);
    for (i = 0; i < n; i++) {
        uint32_t raw = code_at(k10, c0 + i);
        CHECK(raw < UINT32_C(0x80000000));
        CHECK(out[i] == (m ? raw % m : raw));
        CHECK(out1[i] == out[i]);
    }
    CHECK(out1[n] == code_at(k, c0 + n));

    check_find(k, c0, n, n ? out[n / 2] : 123456u, out);
    check_find(k, c0, n, n ? out[n - 1] : 0u, out);
    check_pair(k, c0, n, n ? out1[n / 2] : 1u, n ? out1[n / 2 + 1] : 2u,
               out1);
    check_pair(k, c0, n, out1[n ? n - 1 : 0], out1[n], out1);
    free(out);
    free(out1);
}

static void test_all_key_lengths(void)
{
    static const size_t windows[4] = {0, 1, 2, 17};
    size_t len, a, w;
    int d;

    for (len = 1; len <= 200; len++) {
        uint8_t *key = (uint8_t *)xmalloc(len);
        key_pattern(key, len);
        key[0] ^= (uint8_t)len;
        for (a = 0; a < 3; a++) {
            fc_key *k10 = new_key(ALGS[a], key, len, 10);
            CHECK(k10->alg == ALGS[a] && k10->digits == 10);
            for (d = FC_MIN_DIGITS; d <= FC_MAX_DIGITS; d++) {
                fc_key *k = new_key(ALGS[a], key, len, d);
                CHECK(k->alg == ALGS[a] && k->digits == d);
                if (d < 10)
                    CHECK(k->modulus == pow10u(d));
                for (w = 0; w < 4; w++) {
                    uint64_t c0 = (uint64_t)len * 7919u + w;
                    if (len % 3 == 0) /* high counter word in use */
                        c0 += (uint64_t)len << 40;
                    check_window(k, k10, c0, windows[w]);
                }
                free(k);
            }
            free(k10);
        }
        free(key);
    }
}

/* Windows longer than the kernel's internal chunk, and repeated codes. */
static void test_long_window(void)
{
    const size_t n = 5000;
    const uint64_t c0 = 1000;
    const char *key = "12345678901234567890";
    fc_key *k = new_key(FC_SHA1, (const uint8_t *)key, 20, 6);
    uint32_t *out = (uint32_t *)xmalloc((n + 1) * sizeof *out);
    size_t i, j, rep = n;
    static const size_t probe[] = {0, 1, 255, 256, 257, 511, 512, 4095, 4999};

    CHECK(fc_generate(k, c0, n + 1, out) == FC_OK);
    for (i = 0; i < n + 1; i += 97)
        CHECK(out[i] == code_at(k, c0 + i));
    /* A code that occurs at least twice, to exercise max_matches < count. */
    for (i = 0; i < n && rep == n; i++)
        for (j = i + 1; j < n; j++)
            if (out[i] == out[j]) {
                rep = i;
                break;
            }
    CHECK(rep < n);
    if (rep < n) {
        uint64_t one = 0;
        CHECK(fc_find(k, c0, n, out[rep], NULL, 0) >= 2);
        CHECK(fc_find(k, c0, n, out[rep], &one, 1) >= 2);
        CHECK(one == c0 + rep);
        check_find(k, c0, n, out[rep], out);
    }
    for (i = 0; i < sizeof probe / sizeof probe[0]; i++) {
        check_find(k, c0, n, out[probe[i]], out);
        check_pair(k, c0, n, out[probe[i]], out[probe[i] + 1], out);
    }
    free(out);
    free(k);
}

/* Counters at the top of the 64-bit range and across the 2^32 boundary. */
static void test_high_counters(void)
{
    static const char k1[] = "12345678901234567890";
    static const char k2[] = "12345678901234567890123456789012";
    static const char k3[] = "1234567890123456789012345678901234567890"
                             "123456789012345678901234";
    const char *keys[3] = {k1, k2, k3};
    const size_t lens[3] = {20, 32, 64};
    /* raw values at 2^64 - 2 and 2^64 - 1 (Python hmac) */
    static const uint32_t top[3][2] = {
        {0x4cdc074cu, 0x6320ceb3u},
        {0x03dd306cu, 0x144dafebu},
        {0x4c4d59b8u, 0x501f45c8u},
    };
    size_t a, i;

    for (a = 0; a < 3; a++) {
        fc_key *k10 = new_key(ALGS[a], (const uint8_t *)keys[a], lens[a], 10);
        fc_key *k6 = new_key(ALGS[a], (const uint8_t *)keys[a], lens[a], 6);
        uint32_t *out = (uint32_t *)xmalloc(18 * sizeof *out);
        uint64_t c0 = UINT64_MAX - 17;

        CHECK(code_at(k10, UINT64_MAX - 1) == top[a][0]);
        CHECK(code_at(k10, UINT64_MAX) == top[a][1]);
        CHECK(code_at(k6, UINT64_MAX) == top[a][1] % 1000000u);

        /* out[i] = code(c0 + i), last = code(2^64 - 1) */
        CHECK(fc_generate(k6, c0, 18, out) == FC_OK);
        for (i = 0; i < 18; i++)
            CHECK(out[i] == code_at(k6, c0 + i));
        CHECK(out[17] == top[a][1] % 1000000u);
        check_find(k6, c0, 18, out[17], out);
        check_find(k6, c0 + 1, 17, out[17], out + 1);
        check_pair(k6, c0, 17, out[16], out[17], out);
        check_pair(k6, c0, 17, out[0], out[1], out);

        c0 = UINT64_C(0xFFFFFFF8);
        CHECK(fc_generate(k10, c0, 17, out) == FC_OK);
        for (i = 0; i < 17; i++)
            CHECK(out[i] == code_at(k10, c0 + i));
        check_pair(k10, c0, 16, out[7], out[8], out);
        free(out);
        free(k6);
        free(k10);
    }
}

/* ---- argument validation and paths ------------------------------------ */

static void test_bad_args(void)
{
    const uint8_t *key = (const uint8_t *)"12345678901234567890";
    fc_key *k = (fc_key *)xmalloc(sizeof *k);
    fc_key *snap = (fc_key *)xmalloc(sizeof *snap);
    fc_key *bad = (fc_key *)xmalloc(sizeof *bad);
    uint8_t *kb = heap_bytes(key, 20);
    uint32_t *one = (uint32_t *)xmalloc(sizeof *one);
    uint64_t *m = (uint64_t *)xmalloc(sizeof *m);
    static const int bad_algs[] = {0, 4, -1, 100};
    static const int bad_digits[] = {5, 11, 0, -6, 1000};
    size_t i;

    memset(k, 0x5a, sizeof *k);
    memcpy(snap, k, sizeof *k);
    CHECK(fc_key_init(NULL, FC_SHA1, kb, 20, 6) == FC_EINVAL);
    CHECK(fc_key_init(k, FC_SHA1, NULL, 20, 6) == FC_EINVAL);
    CHECK(fc_key_init(k, FC_SHA1, kb, 0, 6) == FC_EINVAL);
    for (i = 0; i < sizeof bad_algs / sizeof bad_algs[0]; i++)
        CHECK(fc_key_init(k, bad_algs[i], kb, 20, 6) == FC_EINVAL);
    for (i = 0; i < sizeof bad_digits / sizeof bad_digits[0]; i++)
        CHECK(fc_key_init(k, FC_SHA256, kb, 20, bad_digits[i]) == FC_EINVAL);
    CHECK(memcmp(k, snap, sizeof *k) == 0); /* untouched on error */

    CHECK(fc_key_init(k, FC_SHA1, kb, 20, 6) == FC_OK);
    CHECK(fc_generate(NULL, 0, 1, one) == FC_EINVAL);
    CHECK(fc_generate(k, 0, 1, NULL) == FC_EINVAL);
    CHECK(fc_generate(k, 0, 0, NULL) == FC_OK);
    CHECK(fc_find(NULL, 0, 5, 1, m, 1) == FC_EINVAL);
    CHECK(fc_find(k, 0, 5, 1, NULL, 1) == FC_EINVAL);
    CHECK(fc_find(k, 0, 10, 287082, NULL, 0) == 1);
    CHECK(fc_find_pair(NULL, 0, 5, 1, 2, m, 1) == FC_EINVAL);
    CHECK(fc_find_pair(k, 0, 5, 1, 2, NULL, 1) == FC_EINVAL);
    CHECK(fc_find_pair(k, 0, 10, 287082, 359152, NULL, 0) == 1);
    *m = 0;
    CHECK(fc_find_pair(k, 0, 10, 287082, 359152, m, 1) == 1);
    CHECK(*m == 1);

    /* A corrupted or never-initialised key is refused. */
    memcpy(bad, k, sizeof *k);
    bad->alg = 7;
    CHECK(fc_generate(bad, 0, 1, one) == FC_EINVAL);
    CHECK(fc_find(bad, 0, 1, 1, m, 1) == FC_EINVAL);
    CHECK(fc_find_pair(bad, 0, 1, 1, 2, m, 1) == FC_EINVAL);
    memcpy(bad, k, sizeof *k);
    bad->digits = 3;
    CHECK(fc_generate(bad, 0, 1, one) == FC_EINVAL);
    memset(bad, 0, sizeof *bad);
    CHECK(fc_generate(bad, 0, 1, one) == FC_EINVAL);
    CHECK(fc_find(bad, 0, 1, 1, m, 1) == FC_EINVAL);

    free(m);
    free(one);
    free(kb);
    free(bad);
    free(snap);
    free(k);
}

static const int ALL_PATHS[3] = {FC_PATH_PORTABLE, FC_PATH_SHANI,
                                 FC_PATH_AVX512};

static int path_available(int path)
{
    return (fc_available_paths() >> path) & 1;
}

/* The path FC_PATH_AUTO must pick: the fastest available. */
static int best_path(void)
{
    if (path_available(FC_PATH_AVX512))
        return FC_PATH_AVX512;
    if (path_available(FC_PATH_SHANI))
        return FC_PATH_SHANI;
    return FC_PATH_PORTABLE;
}

static void test_paths(void)
{
    const int mask = fc_available_paths();
    size_t i;

    /* The first call resolves AUTO. */
    CHECK(fc_current_path() == best_path());
    CHECK(mask & (1 << FC_PATH_PORTABLE));
    CHECK((mask & ~((1 << FC_PATH_PORTABLE) | (1 << FC_PATH_SHANI) |
                    (1 << FC_PATH_AVX512))) == 0);
    for (i = 0; i < 3; i++) {
        const int p = ALL_PATHS[i];
        CHECK(fc_set_path(FC_PATH_PORTABLE) == FC_OK);
        if (path_available(p)) {
            CHECK(fc_set_path(p) == FC_OK);
            CHECK(fc_current_path() == p);
        } else {
            CHECK(fc_set_path(p) == FC_ENOPATH);
            CHECK(fc_current_path() == FC_PATH_PORTABLE); /* unchanged */
        }
    }
    CHECK(fc_set_path(4) == FC_ENOPATH);
    CHECK(fc_set_path(-1) == FC_ENOPATH);
    CHECK(fc_set_path(1000) == FC_ENOPATH);
    CHECK(fc_set_path(31) == FC_ENOPATH);
    CHECK(fc_set_path(FC_PATH_AUTO) == FC_OK);
    CHECK(fc_current_path() == best_path());
    CHECK(strcmp(fc_path_name(FC_PATH_PORTABLE), "portable") == 0);
    CHECK(strcmp(fc_path_name(FC_PATH_SHANI), "sha-ni") == 0);
    CHECK(strcmp(fc_path_name(FC_PATH_AVX512), "avx512") == 0);
    CHECK(strcmp(fc_path_name(FC_PATH_AUTO), "unknown") == 0);
    CHECK(strcmp(fc_path_name(4), "unknown") == 0);
    CHECK(strcmp(fc_path_name(-1), "unknown") == 0);
}

/* ---- every path against the portable one ----------------------------- */

/* Codes for c0 .. c0+n-1 on the portable path, into a fresh exact-size
 * buffer; restores the path that was active. */
static uint32_t *portable_codes(const fc_key *k, uint64_t c0, size_t n)
{
    const int was = fc_current_path();
    uint32_t *ref = (uint32_t *)xmalloc(n * sizeof *ref);
    CHECK(fc_set_path(FC_PATH_PORTABLE) == FC_OK);
    CHECK(fc_generate(k, c0, n, ref) == FC_OK);
    CHECK(fc_set_path(was) == FC_OK);
    return ref;
}

/* On the current path: generate n codes into an exact-size buffer and
 * compare with portable; scan for codes taken from the window (first, last,
 * middle; pairs across the last batch boundary) and compare with brute
 * force over the portable codes. */
static void cross_window(const fc_key *k, uint64_t c0, size_t n)
{
    uint32_t *ref = portable_codes(k, c0, n + 1); /* n + 1 for pairs */
    uint32_t *out = (uint32_t *)xmalloc(n * sizeof *out);
    size_t i, bad = 0;

    CHECK(fc_generate(k, c0, n, out) == FC_OK);
    for (i = 0; i < n; i++)
        bad += out[i] != ref[i];
    CHECK(bad == 0);
    if (bad && failures < 50)
        fprintf(stderr, "  path %s alg %d digits %d c0 %llu n %zu: %zu bad\n",
                fc_path_name(fc_current_path()), k->alg, k->digits,
                (unsigned long long)c0, n, bad);
    if (n) {
        check_find(k, c0, n, ref[0], ref);
        check_find(k, c0, n, ref[n - 1], ref);
        check_pair(k, c0, n, ref[n / 2], ref[n / 2 + 1], ref);
        check_pair(k, c0, n, ref[n - 1], ref[n], ref);
        if (n > 16)
            check_pair(k, c0, n, ref[15], ref[16], ref);
    } else {
        check_find(k, c0, 0, 123456u, ref);
        check_pair(k, c0, 0, 1u, 2u, ref);
    }
    free(out);
    free(ref);
}

static void test_cross_paths(void)
{
    static const size_t lens[] = {0,  1,  2,  3,  7,   8,   9,   15,  16,
                                  17, 31, 33, 63, 255, 256, 257, 5761};
    static const uint64_t starts[] = {
        0, 1000, UINT64_C(0xFFFFFFFF) - 16, UINT64_C(0xFFFFFFFF) - 7,
        UINT64_C(0xFFFFFFFF), UINT64_C(0x1FFFFFFFF) - 3,
        UINT64_C(0xFEDCBA98FFFFFFF1)};
    static const int digits[] = {6, 7, 8, 9, 10};
    uint8_t key[77];
    size_t p, a, l, c, d;

    key_pattern(key, sizeof key);
    for (p = 0; p < 3; p++) {
        if (ALL_PATHS[p] == FC_PATH_PORTABLE || !path_available(ALL_PATHS[p]))
            continue;
        CHECK(fc_set_path(ALL_PATHS[p]) == FC_OK);
        for (a = 0; a < 3; a++) {
            for (d = 0; d < 5; d++) {
                /* key lengths 1..77 rotate through the cases */
                fc_key *k = new_key(ALGS[a], key, 1 + (a * 31 + d * 17) % 77,
                                    digits[d]);
                for (c = 0; c < sizeof starts / sizeof starts[0]; c++)
                    for (l = 0; l < sizeof lens / sizeof lens[0]; l++) {
                        if (lens[l] == 5761 && (c % 3 != 0 || d % 2))
                            continue; /* keep the run short */
                        cross_window(k, starts[c], lens[l]);
                    }
                /* The top of the counter range: the last batch's spare
                 * lanes wrap past 2^64 - 1 and must not be stored. */
                for (l = 1; l <= 40; l++) {
                    cross_window(k, UINT64_MAX - (l - 1), l);
                    cross_window(k, UINT64_MAX - l, l); /* pairs reach 2^64-1 */
                }
                free(k);
            }
        }
    }
    CHECK(fc_set_path(FC_PATH_AUTO) == FC_OK);
}

/* ---- many keys --------------------------------------------------------- */

/* keys[i]: algorithm i % 3 (but runs of one algorithm too), digits 6..10,
 * key length 1..200; counters spread over the 64-bit range. */
static void check_multi(size_t n, unsigned seed)
{
    fc_key **keys = (fc_key **)xmalloc(n * sizeof *keys);
    const fc_key **ck = (const fc_key **)xmalloc(n * sizeof *ck);
    uint64_t *ctr = (uint64_t *)xmalloc(n * sizeof *ctr);
    uint32_t *out = (uint32_t *)xmalloc(n * sizeof *out);
    uint8_t kb[200];
    uint64_t x = 0x9E3779B97F4A7C15u * (seed + 1);
    size_t i;

    memset(ck, 0, n * sizeof *ck);
    memset(ctr, 0, n * sizeof *ctr);
    for (i = 0; i < n; i++) {
        size_t len;
        int alg;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        len = 1 + (size_t)(x % 200);
        alg = ALGS[(seed & 1) ? (i / 5) % 3 : (size_t)(x >> 20) % 3];
        key_pattern(kb, len);
        kb[0] ^= (uint8_t)i;
        keys[i] = new_key(alg, kb, len, FC_MIN_DIGITS + (int)((x >> 40) % 5));
        ck[i] = keys[i];
        switch (i % 4) {
        case 0: ctr[i] = x; break;
        case 1: ctr[i] = UINT64_MAX - (x % 3); break;
        case 2: ctr[i] = UINT64_C(0xFFFFFFFF) + (x % 3); break;
        default: ctr[i] = x % 100000; break;
        }
        out[i] = 0xDEADBEEFu;
    }
    CHECK(fc_generate_multi(ck, n, ctr, out) == FC_OK);
    for (i = 0; i < n; i++)
        CHECK(out[i] == code_at(keys[i], ctr[i]));
    for (i = 0; i < n; i++)
        free(keys[i]);
    free(out);
    free(ctr);
    free(ck);
    free(keys);
}

static void test_multi(void)
{
    static const size_t ns[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100};
    const uint8_t *kb = (const uint8_t *)"12345678901234567890";
    size_t p, i;

    for (p = 0; p < 3; p++) {
        if (!path_available(ALL_PATHS[p]))
            continue;
        CHECK(fc_set_path(ALL_PATHS[p]) == FC_OK);
        for (i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            check_multi(ns[i], (unsigned)i);
            check_multi(ns[i], (unsigned)i + 100);
        }
        /* argument checks: nothing is written on a refusal */
        {
            fc_key *good = new_key(FC_SHA1, kb, 20, 6);
            fc_key *bad = new_key(FC_SHA1, kb, 20, 6);
            const fc_key **ck = (const fc_key **)xmalloc(3 * sizeof *ck);
            uint64_t *ctr = (uint64_t *)xmalloc(3 * sizeof *ctr);
            uint32_t *out = (uint32_t *)xmalloc(3 * sizeof *out);
            bad->digits = 4;
            ck[0] = good;
            ck[1] = bad;
            ck[2] = good;
            ctr[0] = 0;
            ctr[1] = 1;
            ctr[2] = 2;
            out[0] = out[1] = out[2] = 7;
            CHECK(fc_generate_multi(ck, 3, ctr, out) == FC_EINVAL);
            CHECK(out[0] == 7 && out[1] == 7 && out[2] == 7);
            ck[1] = NULL;
            CHECK(fc_generate_multi(ck, 3, ctr, out) == FC_EINVAL);
            CHECK(fc_generate_multi(NULL, 3, ctr, out) == FC_EINVAL);
            ck[1] = good;
            CHECK(fc_generate_multi(ck, 3, NULL, out) == FC_EINVAL);
            CHECK(fc_generate_multi(ck, 3, ctr, NULL) == FC_EINVAL);
            CHECK(fc_generate_multi(NULL, 0, NULL, NULL) == FC_OK);
            CHECK(out[0] == 7 && out[1] == 7 && out[2] == 7);
            CHECK(fc_generate_multi(ck, 3, ctr, out) == FC_OK);
            CHECK(out[0] == 755224u && out[1] == 287082u && out[2] == 359152u);
            free(out);
            free(ctr);
            free(ck);
            free(bad);
            free(good);
        }
    }
    CHECK(fc_set_path(FC_PATH_AUTO) == FC_OK);
}

int main(void)
{
    size_t p;

    test_paths();
    /* Everything known-answer, once per available path. */
    for (p = 0; p < 3; p++) {
        if (!path_available(ALL_PATHS[p]))
            continue;
        CHECK(fc_set_path(ALL_PATHS[p]) == FC_OK);
        printf("path %s\n", fc_path_name(ALL_PATHS[p]));
        test_bad_args();
        test_rfc4226();
        test_rfc6238();
        test_long_keys();
        test_high_counters();
        test_long_window();
        test_all_key_lengths();
    }
    CHECK(fc_set_path(FC_PATH_AUTO) == FC_OK);
    test_cross_paths();
    test_multi();
    if (failures) {
        fprintf(stderr, "FAILED: %ld check(s)\n", failures);
        return 1;
    }
    printf("OK\n");
    return 0;
}
