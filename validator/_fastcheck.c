/* vtoken check kernel: HOTP (RFC 4226) over HMAC-SHA1/SHA256/SHA512.
 *
 * SHA-1, SHA-256 and SHA-512 are implemented here from FIPS 180-4; nothing
 * links against a crypto library.
 *
 * Layout of this file:
 *   1. helpers (byte order, rotations, wiping)
 *   2. the three compression functions (portable C, fully unrolled, with a
 *      16-word circular message schedule)
 *   3. whole-message hashing (only used to shorten keys longer than a block)
 *      and fc_key_init (HMAC inner/outer midstates)
 *   4. per-path code generators: a generator fills out[0..n-1] with the codes
 *      for counters c0..c0+n-1.
 *        4a. portable C (the reference every other path is tested against);
 *        4b. x86 only (#ifdef FC_X86): compiled with per-function
 *            __attribute__((target(...))), never global -m flags, and used
 *            only after a cpuid check, so the module runs on any x86-64 and
 *            builds on any compiler/architecture (elsewhere only 4a exists);
 *        4c. SHA-NI: SHA-1 and SHA-256 with the SHA extensions, two
 *            interleaved streams; SHA-512 falls back to portable C;
 *        4d. AVX-512: 16 messages per batch in 32-bit lanes (SHA-1,
 *            SHA-256), 8 in 64-bit lanes (SHA-512): consecutive counters of
 *            one key, or different keys for fc_generate_multi;
 *        4e. the path table, cpuid detection and the AUTO choice (AVX-512,
 *            else SHA-NI, else portable).
 *   5. the public API: fc_generate, fc_find and fc_find_pair call the active
 *      path's generator chunk by chunk, so every path gets find/find_pair for
 *      free; fc_generate_multi uses the path's multi-key generator if it has
 *      one (AVX-512), else one generator call per key.
 *
 * Every path gives identical answers; tests/test_kernel_paths.py and the
 * sanitizer driver force each path and compare it with the portable one.
 *
 * Each HOTP code costs exactly two compressions: one over
 *   [counter(8) | 0x80 | zeros | bit length of ipad block + counter]
 * from the inner midstate and one over
 *   [inner digest | 0x80 | zeros | bit length of opad block + digest]
 * from the outer midstate. The constant words of both blocks (padding byte,
 * zeros, length) are compile-time constants in the hot loop, so the compiler
 * folds them into the first rounds and the schedule; nothing is copied per
 * code.
 *
 * Truncated values are 31-bit, so for 10 digits (10^10 > 2^32) every value is
 * already below 10^10 and the code is the value itself. fc_key.modulus then
 * holds 2^31, which makes the common `value % modulus` the identity; for 6..9
 * digits it holds 10^digits.
 */

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "_fastcheck.h"

/* ------------------------------------------------------------------------ */
/* 1. helpers                                                               */
/* ------------------------------------------------------------------------ */

#define FC_INLINE static inline __attribute__((always_inline))

#define ROL32(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
#define ROR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define ROR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))

/* Choose and majority, shared by the three hashes (any unsigned width). */
#define FC_CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define FC_MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))
#define FC_PAR(x, y, z) ((x) ^ (y) ^ (z))

static inline uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t load_be64(const uint8_t *p)
{
    return ((uint64_t)load_be32(p) << 32) | (uint64_t)load_be32(p + 4);
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void store_be64(uint8_t *p, uint64_t v)
{
    store_be32(p, (uint32_t)(v >> 32));
    store_be32(p + 4, (uint32_t)v);
}

/* Clear key-derived temporaries; the volatile stores cannot be elided. */
static void fc_wipe(void *p, size_t n)
{
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--)
        *v++ = 0;
}

/* ------------------------------------------------------------------------ */
/* 2. compression functions (FIPS 180-4, sections 6.1.2, 6.2.2, 6.4.2)     */
/* ------------------------------------------------------------------------ */

/* In all three, w[16] holds the message block as big-endian words on entry
 * and is used as the circular message schedule (w[t & 15] = W_t), so it is
 * clobbered. The state is updated in place (H += working variables). The
 * W_LD(t) / W_UP(t) macros return W_t for t < 16 / t >= 16; W_UP computes it
 * into w[t & 15], which held W_{t-16}. */

/* ---- SHA-1 ---- */

#define SHA1_K0 0x5a827999u
#define SHA1_K1 0x6ed9eba1u
#define SHA1_K2 0x8f1bbcdcu
#define SHA1_K3 0xca62c1d6u

#define SHA1_W_LD(t) (w[(t)])
#define SHA1_W_UP(t)                                                        \
    (w[(t) & 15] = ROL32(w[((t) + 13) & 15] ^ w[((t) + 8) & 15] ^           \
                         w[((t) + 2) & 15] ^ w[(t) & 15], 1))

/* One round. The caller rotates the variable names instead of moving the
 * values: the new `a` lands in the variable passed as e. */
#define SHA1_RND(a, b, c, d, e, F, K, W, t)                                 \
    do {                                                                    \
        (e) += ROL32((a), 5) + F((b), (c), (d)) + (K) + W(t);               \
        (b) = ROL32((b), 30);                                               \
    } while (0)

#define SHA1_RND5(F, K, W, t)                                               \
    SHA1_RND(a, b, c, d, e, F, K, W, (t));                                  \
    SHA1_RND(e, a, b, c, d, F, K, W, (t) + 1);                              \
    SHA1_RND(d, e, a, b, c, F, K, W, (t) + 2);                              \
    SHA1_RND(c, d, e, a, b, F, K, W, (t) + 3);                              \
    SHA1_RND(b, c, d, e, a, F, K, W, (t) + 4)

FC_INLINE void sha1_compress(uint32_t st[5], uint32_t w[16])
{
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4];

    SHA1_RND5(FC_CH, SHA1_K0, SHA1_W_LD, 0);
    SHA1_RND5(FC_CH, SHA1_K0, SHA1_W_LD, 5);
    SHA1_RND5(FC_CH, SHA1_K0, SHA1_W_LD, 10);
    SHA1_RND(a, b, c, d, e, FC_CH, SHA1_K0, SHA1_W_LD, 15);
    SHA1_RND(e, a, b, c, d, FC_CH, SHA1_K0, SHA1_W_UP, 16);
    SHA1_RND(d, e, a, b, c, FC_CH, SHA1_K0, SHA1_W_UP, 17);
    SHA1_RND(c, d, e, a, b, FC_CH, SHA1_K0, SHA1_W_UP, 18);
    SHA1_RND(b, c, d, e, a, FC_CH, SHA1_K0, SHA1_W_UP, 19);

    SHA1_RND5(FC_PAR, SHA1_K1, SHA1_W_UP, 20);
    SHA1_RND5(FC_PAR, SHA1_K1, SHA1_W_UP, 25);
    SHA1_RND5(FC_PAR, SHA1_K1, SHA1_W_UP, 30);
    SHA1_RND5(FC_PAR, SHA1_K1, SHA1_W_UP, 35);

    SHA1_RND5(FC_MAJ, SHA1_K2, SHA1_W_UP, 40);
    SHA1_RND5(FC_MAJ, SHA1_K2, SHA1_W_UP, 45);
    SHA1_RND5(FC_MAJ, SHA1_K2, SHA1_W_UP, 50);
    SHA1_RND5(FC_MAJ, SHA1_K2, SHA1_W_UP, 55);

    SHA1_RND5(FC_PAR, SHA1_K3, SHA1_W_UP, 60);
    SHA1_RND5(FC_PAR, SHA1_K3, SHA1_W_UP, 65);
    SHA1_RND5(FC_PAR, SHA1_K3, SHA1_W_UP, 70);
    SHA1_RND5(FC_PAR, SHA1_K3, SHA1_W_UP, 75);

    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
}

static const uint32_t SHA1_IV[5] = {
    0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u,
};

/* ---- SHA-256 ---- */

/* Fractional parts of the cube roots of the first 64 primes (FIPS 180-4
 * 4.2.2); derived with exact integer arithmetic. */
static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
    0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
    0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
    0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* Fractional parts of the square roots of the first 8 primes (5.3.3). */
static const uint32_t SHA256_IV[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#define S256_BSIG0(x) (ROR32((x), 2) ^ ROR32((x), 13) ^ ROR32((x), 22))
#define S256_BSIG1(x) (ROR32((x), 6) ^ ROR32((x), 11) ^ ROR32((x), 25))
#define S256_SSIG0(x) (ROR32((x), 7) ^ ROR32((x), 18) ^ ((x) >> 3))
#define S256_SSIG1(x) (ROR32((x), 17) ^ ROR32((x), 19) ^ ((x) >> 10))

#define S256_W_LD(t) (w[(t)])
#define S256_W_UP(t)                                                        \
    (w[(t) & 15] += S256_SSIG1(w[((t) + 14) & 15]) + w[((t) + 9) & 15] +    \
                    S256_SSIG0(w[((t) + 1) & 15]))

/* One round; the new `a` lands in h and the new `e` in d. */
#define S256_RND(a, b, c, d, e, f, g, h, W, t)                              \
    do {                                                                    \
        uint32_t t1_ = (h) + S256_BSIG1(e) + FC_CH((e), (f), (g)) +         \
                       K256[(t)] + W(t);                                    \
        (d) += t1_;                                                         \
        (h) = t1_ + S256_BSIG0(a) + FC_MAJ((a), (b), (c));                  \
    } while (0)

#define S256_RND8(W, t)                                                     \
    S256_RND(a, b, c, d, e, f, g, h, W, (t));                               \
    S256_RND(h, a, b, c, d, e, f, g, W, (t) + 1);                           \
    S256_RND(g, h, a, b, c, d, e, f, W, (t) + 2);                           \
    S256_RND(f, g, h, a, b, c, d, e, W, (t) + 3);                           \
    S256_RND(e, f, g, h, a, b, c, d, W, (t) + 4);                           \
    S256_RND(d, e, f, g, h, a, b, c, W, (t) + 5);                           \
    S256_RND(c, d, e, f, g, h, a, b, W, (t) + 6);                           \
    S256_RND(b, c, d, e, f, g, h, a, W, (t) + 7)

FC_INLINE void sha256_compress(uint32_t st[8], uint32_t w[16])
{
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    uint32_t e = st[4], f = st[5], g = st[6], h = st[7];

    S256_RND8(S256_W_LD, 0);
    S256_RND8(S256_W_LD, 8);
    S256_RND8(S256_W_UP, 16);
    S256_RND8(S256_W_UP, 24);
    S256_RND8(S256_W_UP, 32);
    S256_RND8(S256_W_UP, 40);
    S256_RND8(S256_W_UP, 48);
    S256_RND8(S256_W_UP, 56);

    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
    st[5] += f;
    st[6] += g;
    st[7] += h;
}

/* ---- SHA-512 ---- */

/* Fractional parts of the cube roots of the first 80 primes (4.2.3). */
static const uint64_t K512[80] = {
    UINT64_C(0x428a2f98d728ae22), UINT64_C(0x7137449123ef65cd),
    UINT64_C(0xb5c0fbcfec4d3b2f), UINT64_C(0xe9b5dba58189dbbc),
    UINT64_C(0x3956c25bf348b538), UINT64_C(0x59f111f1b605d019),
    UINT64_C(0x923f82a4af194f9b), UINT64_C(0xab1c5ed5da6d8118),
    UINT64_C(0xd807aa98a3030242), UINT64_C(0x12835b0145706fbe),
    UINT64_C(0x243185be4ee4b28c), UINT64_C(0x550c7dc3d5ffb4e2),
    UINT64_C(0x72be5d74f27b896f), UINT64_C(0x80deb1fe3b1696b1),
    UINT64_C(0x9bdc06a725c71235), UINT64_C(0xc19bf174cf692694),
    UINT64_C(0xe49b69c19ef14ad2), UINT64_C(0xefbe4786384f25e3),
    UINT64_C(0x0fc19dc68b8cd5b5), UINT64_C(0x240ca1cc77ac9c65),
    UINT64_C(0x2de92c6f592b0275), UINT64_C(0x4a7484aa6ea6e483),
    UINT64_C(0x5cb0a9dcbd41fbd4), UINT64_C(0x76f988da831153b5),
    UINT64_C(0x983e5152ee66dfab), UINT64_C(0xa831c66d2db43210),
    UINT64_C(0xb00327c898fb213f), UINT64_C(0xbf597fc7beef0ee4),
    UINT64_C(0xc6e00bf33da88fc2), UINT64_C(0xd5a79147930aa725),
    UINT64_C(0x06ca6351e003826f), UINT64_C(0x142929670a0e6e70),
    UINT64_C(0x27b70a8546d22ffc), UINT64_C(0x2e1b21385c26c926),
    UINT64_C(0x4d2c6dfc5ac42aed), UINT64_C(0x53380d139d95b3df),
    UINT64_C(0x650a73548baf63de), UINT64_C(0x766a0abb3c77b2a8),
    UINT64_C(0x81c2c92e47edaee6), UINT64_C(0x92722c851482353b),
    UINT64_C(0xa2bfe8a14cf10364), UINT64_C(0xa81a664bbc423001),
    UINT64_C(0xc24b8b70d0f89791), UINT64_C(0xc76c51a30654be30),
    UINT64_C(0xd192e819d6ef5218), UINT64_C(0xd69906245565a910),
    UINT64_C(0xf40e35855771202a), UINT64_C(0x106aa07032bbd1b8),
    UINT64_C(0x19a4c116b8d2d0c8), UINT64_C(0x1e376c085141ab53),
    UINT64_C(0x2748774cdf8eeb99), UINT64_C(0x34b0bcb5e19b48a8),
    UINT64_C(0x391c0cb3c5c95a63), UINT64_C(0x4ed8aa4ae3418acb),
    UINT64_C(0x5b9cca4f7763e373), UINT64_C(0x682e6ff3d6b2b8a3),
    UINT64_C(0x748f82ee5defb2fc), UINT64_C(0x78a5636f43172f60),
    UINT64_C(0x84c87814a1f0ab72), UINT64_C(0x8cc702081a6439ec),
    UINT64_C(0x90befffa23631e28), UINT64_C(0xa4506cebde82bde9),
    UINT64_C(0xbef9a3f7b2c67915), UINT64_C(0xc67178f2e372532b),
    UINT64_C(0xca273eceea26619c), UINT64_C(0xd186b8c721c0c207),
    UINT64_C(0xeada7dd6cde0eb1e), UINT64_C(0xf57d4f7fee6ed178),
    UINT64_C(0x06f067aa72176fba), UINT64_C(0x0a637dc5a2c898a6),
    UINT64_C(0x113f9804bef90dae), UINT64_C(0x1b710b35131c471b),
    UINT64_C(0x28db77f523047d84), UINT64_C(0x32caab7b40c72493),
    UINT64_C(0x3c9ebe0a15c9bebc), UINT64_C(0x431d67c49c100d4c),
    UINT64_C(0x4cc5d4becb3e42b6), UINT64_C(0x597f299cfc657e2a),
    UINT64_C(0x5fcb6fab3ad6faec), UINT64_C(0x6c44198c4a475817),
};

/* Fractional parts of the square roots of the first 8 primes (5.3.5). */
static const uint64_t SHA512_IV[8] = {
    UINT64_C(0x6a09e667f3bcc908), UINT64_C(0xbb67ae8584caa73b),
    UINT64_C(0x3c6ef372fe94f82b), UINT64_C(0xa54ff53a5f1d36f1),
    UINT64_C(0x510e527fade682d1), UINT64_C(0x9b05688c2b3e6c1f),
    UINT64_C(0x1f83d9abfb41bd6b), UINT64_C(0x5be0cd19137e2179),
};

#define S512_BSIG0(x) (ROR64((x), 28) ^ ROR64((x), 34) ^ ROR64((x), 39))
#define S512_BSIG1(x) (ROR64((x), 14) ^ ROR64((x), 18) ^ ROR64((x), 41))
#define S512_SSIG0(x) (ROR64((x), 1) ^ ROR64((x), 8) ^ ((x) >> 7))
#define S512_SSIG1(x) (ROR64((x), 19) ^ ROR64((x), 61) ^ ((x) >> 6))

#define S512_W_LD(t) (w[(t)])
#define S512_W_UP(t)                                                        \
    (w[(t) & 15] += S512_SSIG1(w[((t) + 14) & 15]) + w[((t) + 9) & 15] +    \
                    S512_SSIG0(w[((t) + 1) & 15]))

#define S512_RND(a, b, c, d, e, f, g, h, W, t)                              \
    do {                                                                    \
        uint64_t t1_ = (h) + S512_BSIG1(e) + FC_CH((e), (f), (g)) +         \
                       K512[(t)] + W(t);                                    \
        (d) += t1_;                                                         \
        (h) = t1_ + S512_BSIG0(a) + FC_MAJ((a), (b), (c));                  \
    } while (0)

#define S512_RND8(W, t)                                                     \
    S512_RND(a, b, c, d, e, f, g, h, W, (t));                               \
    S512_RND(h, a, b, c, d, e, f, g, W, (t) + 1);                           \
    S512_RND(g, h, a, b, c, d, e, f, W, (t) + 2);                           \
    S512_RND(f, g, h, a, b, c, d, e, W, (t) + 3);                           \
    S512_RND(e, f, g, h, a, b, c, d, W, (t) + 4);                           \
    S512_RND(d, e, f, g, h, a, b, c, W, (t) + 5);                           \
    S512_RND(c, d, e, f, g, h, a, b, W, (t) + 6);                           \
    S512_RND(b, c, d, e, f, g, h, a, W, (t) + 7)

FC_INLINE void sha512_compress(uint64_t st[8], uint64_t w[16])
{
    uint64_t a = st[0], b = st[1], c = st[2], d = st[3];
    uint64_t e = st[4], f = st[5], g = st[6], h = st[7];

    S512_RND8(S512_W_LD, 0);
    S512_RND8(S512_W_LD, 8);
    S512_RND8(S512_W_UP, 16);
    S512_RND8(S512_W_UP, 24);
    S512_RND8(S512_W_UP, 32);
    S512_RND8(S512_W_UP, 40);
    S512_RND8(S512_W_UP, 48);
    S512_RND8(S512_W_UP, 56);
    S512_RND8(S512_W_UP, 64);
    S512_RND8(S512_W_UP, 72);

    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
    st[5] += f;
    st[6] += g;
    st[7] += h;
}

/* ------------------------------------------------------------------------ */
/* 3. whole-message hashing and key setup (cold code)                       */
/* ------------------------------------------------------------------------ */

/* A generic state: SHA-1/SHA-256 words sit in the low 32 bits of a slot,
 * the same convention as fc_key.inner/outer. */

static int fc_alg_ok(int alg)
{
    return alg == FC_SHA1 || alg == FC_SHA256 || alg == FC_SHA512;
}

static size_t fc_block_size(int alg)
{
    return alg == FC_SHA512 ? 128 : 64;
}

static size_t fc_state_words(int alg)
{
    return alg == FC_SHA1 ? 5 : 8;
}

static void fc_state_init(int alg, uint64_t st[8])
{
    size_t i;
    memset(st, 0, 8 * sizeof(uint64_t));
    for (i = 0; i < fc_state_words(alg); i++)
        st[i] = alg == FC_SHA1     ? SHA1_IV[i]
                : alg == FC_SHA256 ? SHA256_IV[i]
                                   : SHA512_IV[i];
}

/* Compress one block of fc_block_size(alg) bytes into st. */
static void fc_compress_bytes(int alg, uint64_t st[8], const uint8_t *blk)
{
    size_t i;
    if (alg == FC_SHA512) {
        uint64_t w[16];
        for (i = 0; i < 16; i++)
            w[i] = load_be64(blk + 8 * i);
        sha512_compress(st, w);
        fc_wipe(w, sizeof w);
    } else {
        uint32_t w[16], s[8];
        for (i = 0; i < 16; i++)
            w[i] = load_be32(blk + 4 * i);
        for (i = 0; i < 8; i++)
            s[i] = (uint32_t)st[i];
        if (alg == FC_SHA1)
            sha1_compress(s, w);
        else
            sha256_compress(s, w);
        for (i = 0; i < fc_state_words(alg); i++)
            st[i] = s[i];
        fc_wipe(w, sizeof w);
        fc_wipe(s, sizeof s);
    }
}

static void fc_state_bytes(int alg, const uint64_t st[8], uint8_t *out)
{
    size_t i;
    if (alg == FC_SHA512) {
        for (i = 0; i < 8; i++)
            store_be64(out + 8 * i, st[i]);
    } else {
        for (i = 0; i < fc_state_words(alg); i++)
            store_be32(out + 4 * i, (uint32_t)st[i]);
    }
}

/* out receives the digest: 20, 32 or 64 bytes. */
static void fc_hash(int alg, const uint8_t *msg, size_t len, uint8_t *out)
{
    const size_t bs = fc_block_size(alg);
    const size_t lenbytes = bs == 128 ? 16 : 8;
    uint64_t st[8];
    uint8_t tail[256];
    size_t rem, total;
    uint64_t bits_lo = (uint64_t)len << 3;
    uint64_t bits_hi = (uint64_t)len >> 61;

    fc_state_init(alg, st);
    while (len >= bs) {
        fc_compress_bytes(alg, st, msg);
        msg += bs;
        len -= bs;
    }
    rem = len;
    memset(tail, 0, sizeof tail);
    if (rem)
        memcpy(tail, msg, rem);
    tail[rem] = 0x80;
    total = rem + 1 + lenbytes <= bs ? bs : 2 * bs;
    store_be64(tail + total - 8, bits_lo);
    if (lenbytes == 16)
        store_be64(tail + total - 16, bits_hi);
    fc_compress_bytes(alg, st, tail);
    if (total > bs)
        fc_compress_bytes(alg, st, tail + bs);
    fc_state_bytes(alg, st, out);
    fc_wipe(tail, sizeof tail);
    fc_wipe(st, sizeof st);
}

int fc_key_init(fc_key *k, int alg, const uint8_t *key, size_t keylen,
                int digits)
{
    uint8_t k0[128], blk[128];
    size_t bs, i;
    uint32_t mod;

    if (k == NULL || key == NULL || keylen == 0 || !fc_alg_ok(alg) ||
        digits < FC_MIN_DIGITS || digits > FC_MAX_DIGITS)
        return FC_EINVAL;

    bs = fc_block_size(alg);
    memset(k0, 0, sizeof k0);
    if (keylen > bs)
        fc_hash(alg, key, keylen, k0); /* RFC 2104: K = H(K) */
    else
        memcpy(k0, key, keylen);

    if (digits >= 10) {
        mod = UINT32_C(0x80000000); /* every 31-bit value is < 10^10 */
    } else {
        mod = 1;
        for (i = 0; i < (size_t)digits; i++)
            mod *= 10;
    }

    memset(k, 0, sizeof *k);
    k->alg = alg;
    k->digits = digits;
    k->modulus = mod;

    for (i = 0; i < bs; i++)
        blk[i] = k0[i] ^ 0x36;
    fc_state_init(alg, k->inner);
    fc_compress_bytes(alg, k->inner, blk);

    for (i = 0; i < bs; i++)
        blk[i] = k0[i] ^ 0x5c;
    fc_state_init(alg, k->outer);
    fc_compress_bytes(alg, k->outer, blk);

    fc_wipe(k0, sizeof k0);
    fc_wipe(blk, sizeof blk);
    return FC_OK;
}

/* ------------------------------------------------------------------------ */
/* 4. code generators                                                       */
/* ------------------------------------------------------------------------ */

/* Dynamic truncation on a digest given as big-endian 32-bit words:
 * bytes off..off+3 (off <= 15, so words off/4 and off/4+1 <= 4), top bit
 * cleared. */
FC_INLINE uint32_t fc_trunc32(const uint32_t *h, uint32_t off)
{
    uint32_t i = off >> 2, r = off & 3;
    uint64_t x = ((uint64_t)h[i] << 32) | h[i + 1];
    return (uint32_t)(x >> (32 - 8 * r)) & UINT32_C(0x7fffffff);
}

/* HMAC bit lengths of the final blocks: one key block + message. */
#define SHA1_INNER_BITS ((64 + 8) * 8)
#define SHA1_OUTER_BITS ((64 + 20) * 8)
#define SHA256_INNER_BITS ((64 + 8) * 8)
#define SHA256_OUTER_BITS ((64 + 32) * 8)
#define SHA512_INNER_BITS ((128 + 8) * 8)
#define SHA512_OUTER_BITS ((128 + 64) * 8)

FC_INLINE uint32_t sha1_hotp_value(const uint32_t ist[5],
                                   const uint32_t ost[5], uint64_t ctr)
{
    uint32_t w[16], s[5];

    s[0] = ist[0]; s[1] = ist[1]; s[2] = ist[2]; s[3] = ist[3]; s[4] = ist[4];
    w[0] = (uint32_t)(ctr >> 32);
    w[1] = (uint32_t)ctr;
    w[2] = UINT32_C(0x80000000);
    w[3] = 0; w[4] = 0; w[5] = 0; w[6] = 0; w[7] = 0; w[8] = 0;
    w[9] = 0; w[10] = 0; w[11] = 0; w[12] = 0; w[13] = 0; w[14] = 0;
    w[15] = SHA1_INNER_BITS;
    sha1_compress(s, w);

    w[0] = s[0]; w[1] = s[1]; w[2] = s[2]; w[3] = s[3]; w[4] = s[4];
    w[5] = UINT32_C(0x80000000);
    w[6] = 0; w[7] = 0; w[8] = 0; w[9] = 0; w[10] = 0;
    w[11] = 0; w[12] = 0; w[13] = 0; w[14] = 0;
    w[15] = SHA1_OUTER_BITS;
    s[0] = ost[0]; s[1] = ost[1]; s[2] = ost[2]; s[3] = ost[3]; s[4] = ost[4];
    sha1_compress(s, w);

    return fc_trunc32(s, s[4] & 15);
}

FC_INLINE uint32_t sha256_hotp_value(const uint32_t ist[8],
                                     const uint32_t ost[8], uint64_t ctr)
{
    uint32_t w[16], s[8];
    int i;

    for (i = 0; i < 8; i++)
        s[i] = ist[i];
    w[0] = (uint32_t)(ctr >> 32);
    w[1] = (uint32_t)ctr;
    w[2] = UINT32_C(0x80000000);
    w[3] = 0; w[4] = 0; w[5] = 0; w[6] = 0; w[7] = 0; w[8] = 0;
    w[9] = 0; w[10] = 0; w[11] = 0; w[12] = 0; w[13] = 0; w[14] = 0;
    w[15] = SHA256_INNER_BITS;
    sha256_compress(s, w);

    for (i = 0; i < 8; i++)
        w[i] = s[i];
    w[8] = UINT32_C(0x80000000);
    w[9] = 0; w[10] = 0; w[11] = 0; w[12] = 0; w[13] = 0; w[14] = 0;
    w[15] = SHA256_OUTER_BITS;
    for (i = 0; i < 8; i++)
        s[i] = ost[i];
    sha256_compress(s, w);

    return fc_trunc32(s, s[7] & 15);
}

FC_INLINE uint32_t sha512_hotp_value(const uint64_t ist[8],
                                     const uint64_t ost[8], uint64_t ctr)
{
    uint64_t w[16], s[8];
    uint32_t h[5];
    int i;

    for (i = 0; i < 8; i++)
        s[i] = ist[i];
    w[0] = ctr;
    w[1] = UINT64_C(0x8000000000000000);
    w[2] = 0; w[3] = 0; w[4] = 0; w[5] = 0; w[6] = 0; w[7] = 0; w[8] = 0;
    w[9] = 0; w[10] = 0; w[11] = 0; w[12] = 0; w[13] = 0;
    w[14] = 0; /* high half of the 128-bit length */
    w[15] = SHA512_INNER_BITS;
    sha512_compress(s, w);

    for (i = 0; i < 8; i++)
        w[i] = s[i];
    w[8] = UINT64_C(0x8000000000000000);
    w[9] = 0; w[10] = 0; w[11] = 0; w[12] = 0; w[13] = 0; w[14] = 0;
    w[15] = SHA512_OUTER_BITS;
    for (i = 0; i < 8; i++)
        s[i] = ost[i];
    sha512_compress(s, w);

    /* offset <= 15: the 4 bytes lie in the first 19 digest bytes. */
    h[0] = (uint32_t)(s[0] >> 32);
    h[1] = (uint32_t)s[0];
    h[2] = (uint32_t)(s[1] >> 32);
    h[3] = (uint32_t)s[1];
    h[4] = (uint32_t)(s[2] >> 32);
    return fc_trunc32(h, (uint32_t)s[7] & 15);
}

/* A generator writes the codes for counters c0 .. c0+n-1 into out. The key
 * has been validated; n may be 0. */
typedef void (*fc_gen_fn)(const fc_key *k, uint64_t c0, size_t n,
                          uint32_t *out);

/* A multi-key generator: out[i] = code(keys[i], counters[i]) for i < n. The
 * keys have been validated. */
typedef void (*fc_multi_fn)(const fc_key *const *keys, size_t n,
                            const uint64_t *counters, uint32_t *out);

/* ---- 4a. portable generators ------------------------------------------ */

static void gen_sha1_portable(const fc_key *k, uint64_t c0, size_t n,
                              uint32_t *out)
{
    uint32_t ist[5], ost[5];
    const uint32_t mod = k->modulus;
    size_t i;

    for (i = 0; i < 5; i++) {
        ist[i] = (uint32_t)k->inner[i];
        ost[i] = (uint32_t)k->outer[i];
    }
    for (i = 0; i < n; i++)
        out[i] = sha1_hotp_value(ist, ost, c0 + i) % mod;
}

static void gen_sha256_portable(const fc_key *k, uint64_t c0, size_t n,
                                uint32_t *out)
{
    uint32_t ist[8], ost[8];
    const uint32_t mod = k->modulus;
    size_t i;

    for (i = 0; i < 8; i++) {
        ist[i] = (uint32_t)k->inner[i];
        ost[i] = (uint32_t)k->outer[i];
    }
    for (i = 0; i < n; i++)
        out[i] = sha256_hotp_value(ist, ost, c0 + i) % mod;
}

static void gen_sha512_portable(const fc_key *k, uint64_t c0, size_t n,
                                uint32_t *out)
{
    uint64_t ist[8], ost[8];
    const uint32_t mod = k->modulus;
    size_t i;

    for (i = 0; i < 8; i++) {
        ist[i] = k->inner[i];
        ost[i] = k->outer[i];
    }
    for (i = 0; i < n; i++)
        out[i] = sha512_hotp_value(ist, ost, c0 + i) % mod;
}

/* ---- 4b. x86 paths: which compilers can build them --------------------- *
 *
 * Everything below up to the path table is x86-only and compiled with
 * per-function target attributes, never with global -m flags, so the module
 * still runs on any x86-64; fc_cpu_paths() checks cpuid (and, for AVX-512,
 * that the OS saves the zmm/opmask state) before a path can be chosen.
 * Define FC_NO_X86_PATHS to build the portable path only. */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(FC_NO_X86_PATHS)
#if defined(__clang__)
#if __clang_major__ >= 9
#define FC_X86 1
#endif
#elif defined(__GNUC__) && __GNUC__ >= 6
#define FC_X86 1
#endif
#endif

#ifdef FC_X86
#include <cpuid.h>
#include <immintrin.h>

#define FC_I32(x) ((int)(uint32_t)(x))

/* ---- division-free `value % modulus` for the fast paths ---------------- *
 *
 * Values are below 2^31. For a divisor d (1 <= d < 2^32) let
 * l = ceil(log2 d), s = 31 + l and m = ceil(2^s / d). Then
 * 2^s <= m*d < 2^s + d <= 2^s + 2^l, and by Granlund & Montgomery (1994),
 * Theorem 4.2 with N = 31, floor(x*m / 2^s) == floor(x / d) for every
 * 0 <= x < 2^31. Since d > 2^(l-1), m < 2^32, so x*m < 2^63 fits in 64
 * bits and m fits a 32-bit lane of vpmuludq. (Checked exhaustively for all
 * x < 2^31 and d = 10^6, 10^7, 10^8, 10^9, 2^31, 1, 2^32-1 and others.)
 * The portable path keeps the plain `%`, so the tests compare the two. */
typedef struct {
    uint32_t d;
    uint32_t m;
    uint32_t s;
} fc_divmagic;

static fc_divmagic fc_divmagic_init(uint32_t d)
{
    fc_divmagic r;
    /* l = ceil(log2 d): the bit length of d - 1 */
    const uint32_t l = d > 1 ? 32 - (uint32_t)__builtin_clz(d - 1) : 0;
    r.d = d;
    r.s = 31 + l;
    r.m = (uint32_t)(((UINT64_C(1) << r.s) + d - 1) / d);
    return r;
}

FC_INLINE uint32_t fc_divmagic_mod(uint32_t x, fc_divmagic g)
{
    uint32_t q = (uint32_t)(((uint64_t)x * g.m) >> g.s);
    return x - q * g.d;
}

/* ------------------------------------------------------------------------ */
/* 4c. SHA-NI path: SHA-1 and SHA-256 with the x86 SHA extensions, two     */
/*     codes at a time. SHA-512 has no SHA instructions on these CPUs and   */
/*     uses the portable generator.                                         */
/* ------------------------------------------------------------------------ */

/* Why two streams: each compression is a serial chain of SHA1RNDS4 (or
 * SHA256RNDS2) instructions, and one code is two dependent compressions.
 * One code's instructions (about 550) do not fit in the out-of-order window
 * together with the next code's, so with one stream the chains of
 * consecutive codes barely overlap; interleaving two independent messages
 * in the instruction stream keeps the SHA unit busy. Measured on the Xeon
 * (Sapphire Rapids class) this was written on, SHA-1 codes/s: one stream
 * 13.7 M; two streams 13.7 M while all of the schedule used SHA1MSG2, 20 M
 * with the schedule below. SHA-256: 12.9 M -> 17 M. (The reference notes
 * report that on AMD Zen 4 interleaving was slower than one stream; this
 * was not measured here.) */

#define FC_SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))
#define FC_SHANI_INLINE static inline __attribute__((always_inline)) FC_SHANI_TARGET

/* SHA-1 (Intel SDM, SHA1RNDS4/SHA1NEXTE/SHA1MSG1/SHA1MSG2).
 * abcd holds A..D with A in the top dword; e holds E in the top dword (the
 * low 96 bits of e pass through to the result unchanged). m[j] holds message
 * words W_4j..W_4j+3 with W_4j in the top dword. Four rounds per SHA1RNDS4;
 * its second operand carries W_t + E in the top dword, and SHA1NEXTE derives
 * the next group's E (= A from the start of the previous group, rotated left
 * by 30) and adds it to the next message vector.
 *
 * Message schedule: for t = 16..31 (groups 4..7), SHA1MSG1, an XOR and
 * SHA1MSG2 (which also handles W_4g+3 depending on W_4g in the same
 * vector). For t >= 32 the recurrence unrolled once gives
 *   W_t = rol2(W_t-6 ^ W_t-16 ^ W_t-28 ^ W_t-32),
 * whose inputs all lie in earlier vectors, so plain SSE2 computes it
 * (m[] keeps the last 8 groups). That moves 12 of the 16 SHA1MSG2 per block
 * (a slow instruction on the Xeon measured) to the ordinary vector ALUs:
 * 13.7 -> 20 M codes/s with two streams. Doing groups 4..7 with SSE2 too
 * (with a fix-up for the in-vector dependency) was slower: that chain is
 * serial and became the critical path. */
#define SHANI_ROL32(v, n)                                                   \
    _mm_or_si128(_mm_slli_epi32((v), (n)), _mm_srli_epi32((v), 32 - (n)))

/* W_4g..W_4g+3 for 4 <= g < 8, into m[g & 7]. */
#define SHANI1_SCHED_LOW(m, g)                                              \
    (m[(g) & 7] = _mm_sha1msg2_epu32(                                       \
         _mm_xor_si128(                                                     \
             _mm_sha1msg1_epu32(m[((g) - 4) & 7], m[((g) - 3) & 7]),        \
             m[((g) - 2) & 7]),                                             \
         m[((g) - 1) & 7]))

/* W_4g..W_4g+3 for g >= 8, into m[g & 7]. */
#define SHANI1_SCHED_HIGH(m, g)                                             \
    do {                                                                    \
        /* lanes (top down) W_t-6, W_t-5, W_t-4, W_t-3 */                   \
        const __m128i a_ =                                                  \
            _mm_alignr_epi8(m[((g) - 2) & 7], m[((g) - 1) & 7], 8);         \
        m[(g) & 7] = SHANI_ROL32(                                           \
            _mm_xor_si128(a_, _mm_xor_si128(_mm_xor_si128(m[((g) - 8) & 7], \
                                                          m[((g) - 7) & 7]), \
                                            m[((g) - 4) & 7])),             \
            2);                                                             \
    } while (0)

/* Rounds 4g..4g+3 (g >= 1) of stream S, function/constant selector f. */
#define SHANI1_GROUP_S(g, f, S)                                             \
    do {                                                                    \
        if ((g) >= 8)                                                       \
            SHANI1_SCHED_HIGH(m[S], g);                                     \
        else if ((g) >= 4)                                                  \
            SHANI1_SCHED_LOW(m[S], g);                                      \
        ein[S] = _mm_sha1nexte_epu32(prev[S], m[S][(g) & 7]);               \
        prev[S] = cur[S];                                                   \
        cur[S] = _mm_sha1rnds4_epu32(cur[S], ein[S], (f));                  \
    } while (0)

#define SHANI1_GROUP(g, f)                                                  \
    SHANI1_GROUP_S(g, f, 0);                                                \
    SHANI1_GROUP_S(g, f, 1)

/* Two independent SHA-1 compressions. abcd[s], e[s]: state of stream s,
 * updated in place; msg[s][0..3]: its message vectors. */
FC_SHANI_INLINE void shani_sha1_compress2(__m128i abcd[2], __m128i e[2],
                                          const __m128i msg[2][4])
{
    __m128i m[2][8], cur[2], prev[2], ein[2];
    int s, j;

    for (s = 0; s < 2; s++) {
        for (j = 0; j < 4; j++)
            m[s][j] = msg[s][j];
        ein[s] = _mm_add_epi32(e[s], m[s][0]);
        prev[s] = abcd[s];
        cur[s] = _mm_sha1rnds4_epu32(abcd[s], ein[s], 0);
    }
    SHANI1_GROUP(1, 0);
    SHANI1_GROUP(2, 0);
    SHANI1_GROUP(3, 0);
    SHANI1_GROUP(4, 0);
    SHANI1_GROUP(5, 1);
    SHANI1_GROUP(6, 1);
    SHANI1_GROUP(7, 1);
    SHANI1_GROUP(8, 1);
    SHANI1_GROUP(9, 1);
    SHANI1_GROUP(10, 2);
    SHANI1_GROUP(11, 2);
    SHANI1_GROUP(12, 2);
    SHANI1_GROUP(13, 2);
    SHANI1_GROUP(14, 2);
    SHANI1_GROUP(15, 3);
    SHANI1_GROUP(16, 3);
    SHANI1_GROUP(17, 3);
    SHANI1_GROUP(18, 3);
    SHANI1_GROUP(19, 3);
    for (s = 0; s < 2; s++) {
        /* prev = state at the start of the last group: the final E is its
         * A <<< 30 plus the saved E. */
        e[s] = _mm_sha1nexte_epu32(prev[s], e[s]);
        abcd[s] = _mm_add_epi32(cur[s], abcd[s]);
    }
}

/* SHA-256 (Intel SDM, SHA256RNDS2/SHA256MSG1/SHA256MSG2). abef holds
 * A,B,E,F and cdgh holds C,D,G,H, first-named in the top dword. m[j] holds
 * W_4j..W_4j+3 with W_4j in the bottom dword. SHA256RNDS2 does two rounds
 * with W_t + K_t taken from the low two dwords of its third operand; after
 * it, the old ABEF is the new CDGH. W_16.. come from SHA256MSG1 (sigma0
 * terms), W_t-7 by PALIGNR, and SHA256MSG2 (sigma1 terms). */
#define SHANI256_GROUP_S(g, S)                                              \
    do {                                                                    \
        __m128i wk_, t_;                                                    \
        if ((g) >= 4)                                                       \
            m[S][(g) & 3] = _mm_sha256msg2_epu32(                           \
                _mm_add_epi32(                                              \
                    _mm_sha256msg1_epu32(m[S][(g) & 3],                     \
                                         m[S][((g) + 1) & 3]),              \
                    _mm_alignr_epi8(m[S][((g) + 3) & 3],                    \
                                    m[S][((g) + 2) & 3], 4)),               \
                m[S][((g) + 3) & 3]);                                       \
        wk_ = _mm_add_epi32(m[S][(g) & 3],                                  \
                            _mm_loadu_si128((const __m128i *)&K256[4 * (g)])); \
        t_ = _mm_sha256rnds2_epu32(cdgh[S], abef[S], wk_);                  \
        cdgh[S] = abef[S];                                                  \
        abef[S] = t_;                                                       \
        wk_ = _mm_shuffle_epi32(wk_, 0x0e);                                 \
        t_ = _mm_sha256rnds2_epu32(cdgh[S], abef[S], wk_);                  \
        cdgh[S] = abef[S];                                                  \
        abef[S] = t_;                                                       \
    } while (0)

#define SHANI256_GROUP(g)                                                   \
    SHANI256_GROUP_S(g, 0);                                                 \
    SHANI256_GROUP_S(g, 1)

/* Two independent SHA-256 compressions (see shani_sha1_compress2). */
FC_SHANI_INLINE void shani_sha256_compress2(__m128i abef_io[2],
                                            __m128i cdgh_io[2],
                                            const __m128i msg[2][4])
{
    __m128i m[2][4], abef[2], cdgh[2];
    int s, j;

    for (s = 0; s < 2; s++) {
        for (j = 0; j < 4; j++)
            m[s][j] = msg[s][j];
        abef[s] = abef_io[s];
        cdgh[s] = cdgh_io[s];
    }
    SHANI256_GROUP(0);
    SHANI256_GROUP(1);
    SHANI256_GROUP(2);
    SHANI256_GROUP(3);
    SHANI256_GROUP(4);
    SHANI256_GROUP(5);
    SHANI256_GROUP(6);
    SHANI256_GROUP(7);
    SHANI256_GROUP(8);
    SHANI256_GROUP(9);
    SHANI256_GROUP(10);
    SHANI256_GROUP(11);
    SHANI256_GROUP(12);
    SHANI256_GROUP(13);
    SHANI256_GROUP(14);
    SHANI256_GROUP(15);
    for (s = 0; s < 2; s++) {
        abef_io[s] = _mm_add_epi32(abef[s], abef_io[s]);
        cdgh_io[s] = _mm_add_epi32(cdgh[s], cdgh_io[s]);
    }
}

/* Midstates of a key as SHA-NI state vectors. */
typedef struct {
    __m128i in0, in1, out0, out1;
} shani_key;

FC_SHANI_INLINE shani_key shani_key_sha1(const fc_key *k)
{
    shani_key r;
    r.in0 = _mm_set_epi32(FC_I32(k->inner[0]), FC_I32(k->inner[1]),
                          FC_I32(k->inner[2]), FC_I32(k->inner[3]));
    r.in1 = _mm_set_epi32(FC_I32(k->inner[4]), 0, 0, 0);
    r.out0 = _mm_set_epi32(FC_I32(k->outer[0]), FC_I32(k->outer[1]),
                           FC_I32(k->outer[2]), FC_I32(k->outer[3]));
    r.out1 = _mm_set_epi32(FC_I32(k->outer[4]), 0, 0, 0);
    return r;
}

FC_SHANI_INLINE shani_key shani_key_sha256(const fc_key *k)
{
    shani_key r; /* in0/out0: ABEF, in1/out1: CDGH */
    r.in0 = _mm_set_epi32(FC_I32(k->inner[0]), FC_I32(k->inner[1]),
                          FC_I32(k->inner[4]), FC_I32(k->inner[5]));
    r.in1 = _mm_set_epi32(FC_I32(k->inner[2]), FC_I32(k->inner[3]),
                          FC_I32(k->inner[6]), FC_I32(k->inner[7]));
    r.out0 = _mm_set_epi32(FC_I32(k->outer[0]), FC_I32(k->outer[1]),
                           FC_I32(k->outer[4]), FC_I32(k->outer[5]));
    r.out1 = _mm_set_epi32(FC_I32(k->outer[2]), FC_I32(k->outer[3]),
                           FC_I32(k->outer[6]), FC_I32(k->outer[7]));
    return r;
}

/* The 31-bit HOTP values of key k[s] at counter ctr[s], s = 0, 1 (the two
 * keys may be the same). */
FC_SHANI_INLINE void shani_sha1_values2(const shani_key *const k[2],
                                        const uint64_t ctr[2],
                                        uint32_t val[2])
{
    const __m128i zero = _mm_setzero_si128();
    __m128i abcd[2], e[2], msg[2][4];
    uint32_t h[5];
    int s;

    /* inner block: W0,W1 = counter, W2 = 0x80000000, W15 = bit length */
    for (s = 0; s < 2; s++) {
        abcd[s] = k[s]->in0;
        e[s] = k[s]->in1;
        msg[s][0] = _mm_set_epi32(FC_I32(ctr[s] >> 32), FC_I32(ctr[s]),
                                  FC_I32(0x80000000u), 0);
        msg[s][1] = zero;
        msg[s][2] = zero;
        msg[s][3] = _mm_set_epi32(0, 0, 0, SHA1_INNER_BITS);
    }
    shani_sha1_compress2(abcd, e, msg);
    /* outer block: W0..W4 = inner digest (already in message order: A..D
     * in abcd top-down, E in the top dword of e, whose low dwords are 0),
     * W5 = 0x80000000, W15 = bit length */
    for (s = 0; s < 2; s++) {
        msg[s][0] = abcd[s];
        msg[s][1] =
            _mm_or_si128(e[s], _mm_set_epi32(0, FC_I32(0x80000000u), 0, 0));
        msg[s][3] = _mm_set_epi32(0, 0, 0, SHA1_OUTER_BITS);
        abcd[s] = k[s]->out0;
        e[s] = k[s]->out1;
    }
    shani_sha1_compress2(abcd, e, msg);
    for (s = 0; s < 2; s++) {
        h[0] = (uint32_t)_mm_extract_epi32(abcd[s], 3);
        h[1] = (uint32_t)_mm_extract_epi32(abcd[s], 2);
        h[2] = (uint32_t)_mm_extract_epi32(abcd[s], 1);
        h[3] = (uint32_t)_mm_extract_epi32(abcd[s], 0);
        h[4] = (uint32_t)_mm_extract_epi32(e[s], 3);
        val[s] = fc_trunc32(h, h[4] & 15);
    }
}

FC_SHANI_INLINE void shani_sha256_values2(const shani_key *const k[2],
                                          const uint64_t ctr[2],
                                          uint32_t val[2])
{
    const __m128i zero = _mm_setzero_si128();
    __m128i abef[2], cdgh[2], msg[2][4];
    uint32_t h[5];
    int s;

    for (s = 0; s < 2; s++) {
        abef[s] = k[s]->in0;
        cdgh[s] = k[s]->in1;
        msg[s][0] = _mm_set_epi32(0, FC_I32(0x80000000u), FC_I32(ctr[s]),
                                  FC_I32(ctr[s] >> 32));
        msg[s][1] = zero;
        msg[s][2] = zero;
        msg[s][3] = _mm_set_epi32(SHA256_INNER_BITS, 0, 0, 0);
    }
    shani_sha256_compress2(abef, cdgh, msg);
    for (s = 0; s < 2; s++) {
        /* Digest to message words: r1 = [a b e f], r2 = [c d g h] from the
         * bottom dword up; W0..3 = a b c d, W4..7 = e f g h, W8 =
         * 0x80000000, W15 = bit length. */
        const __m128i r1 = _mm_shuffle_epi32(abef[s], 0x1b);
        const __m128i r2 = _mm_shuffle_epi32(cdgh[s], 0x1b);
        msg[s][0] = _mm_unpacklo_epi64(r1, r2);
        msg[s][1] = _mm_unpackhi_epi64(r1, r2);
        msg[s][2] = _mm_set_epi32(0, 0, 0, FC_I32(0x80000000u));
        msg[s][3] = _mm_set_epi32(SHA256_OUTER_BITS, 0, 0, 0);
        abef[s] = k[s]->out0;
        cdgh[s] = k[s]->out1;
    }
    shani_sha256_compress2(abef, cdgh, msg);
    for (s = 0; s < 2; s++) {
        h[0] = (uint32_t)_mm_extract_epi32(abef[s], 3);
        h[1] = (uint32_t)_mm_extract_epi32(abef[s], 2);
        h[2] = (uint32_t)_mm_extract_epi32(cdgh[s], 3);
        h[3] = (uint32_t)_mm_extract_epi32(cdgh[s], 2);
        h[4] = (uint32_t)_mm_extract_epi32(abef[s], 1);
        val[s] = fc_trunc32(h, (uint32_t)_mm_extract_epi32(cdgh[s], 0) & 15);
    }
}

/* Pairs of consecutive counters; an odd last counter is computed with its
 * successor (which may wrap past 2^64 - 1), and only its own code stored. */
#define SHANI_GEN_BODY(keyfn, valfn)                                        \
    do {                                                                    \
        const shani_key sk = keyfn(k);                                      \
        const shani_key *const kk[2] = {&sk, &sk};                          \
        const fc_divmagic g = fc_divmagic_init(k->modulus);                 \
        uint64_t ctr[2];                                                    \
        uint32_t val[2];                                                    \
        size_t i;                                                           \
        for (i = 0; i + 2 <= n; i += 2) {                                   \
            ctr[0] = c0 + i;                                                \
            ctr[1] = c0 + i + 1;                                            \
            valfn(kk, ctr, val);                                            \
            out[i] = fc_divmagic_mod(val[0], g);                            \
            out[i + 1] = fc_divmagic_mod(val[1], g);                        \
        }                                                                   \
        if (i < n) {                                                        \
            ctr[0] = c0 + i;                                                \
            ctr[1] = c0 + i + 1;                                            \
            valfn(kk, ctr, val);                                            \
            out[i] = fc_divmagic_mod(val[0], g);                            \
        }                                                                   \
    } while (0)

FC_SHANI_TARGET static void gen_sha1_shani(const fc_key *k, uint64_t c0,
                                           size_t n, uint32_t *out)
{
    SHANI_GEN_BODY(shani_key_sha1, shani_sha1_values2);
}

FC_SHANI_TARGET static void gen_sha256_shani(const fc_key *k, uint64_t c0,
                                             size_t n, uint32_t *out)
{
    SHANI_GEN_BODY(shani_key_sha256, shani_sha256_values2);
}

/* Many keys: two keys of one algorithm per call (the two streams); SHA-512
 * keys and a final unpaired key go one at a time. */
FC_SHANI_TARGET static void shani_multi_pair(int alg,
                                             const fc_key *const *keys,
                                             const uint64_t *counters,
                                             const size_t idx[2],
                                             size_t count, uint32_t *out)
{
    shani_key sk[2];
    const shani_key *kk[2];
    uint64_t ctr[2];
    uint32_t val[2];
    size_t s;

    for (s = 0; s < 2; s++) {
        const fc_key *k = keys[idx[s < count ? s : 0]];
        sk[s] = alg == FC_SHA1 ? shani_key_sha1(k) : shani_key_sha256(k);
        kk[s] = &sk[s];
        ctr[s] = counters[idx[s < count ? s : 0]];
    }
    if (alg == FC_SHA1)
        shani_sha1_values2(kk, ctr, val);
    else
        shani_sha256_values2(kk, ctr, val);
    for (s = 0; s < count; s++)
        out[idx[s]] = fc_divmagic_mod(
            val[s], fc_divmagic_init(keys[idx[s]]->modulus));
}

FC_SHANI_TARGET static void multi_shani(const fc_key *const *keys, size_t n,
                                        const uint64_t *counters,
                                        uint32_t *out)
{
    size_t pend[4][2], cnt[4] = {0, 0, 0, 0}, i;

    for (i = 0; i < n; i++) {
        const int alg = keys[i]->alg;
        if (alg == FC_SHA512) {
            gen_sha512_portable(keys[i], counters[i], 1, out + i);
            continue;
        }
        pend[alg][cnt[alg]++] = i;
        if (cnt[alg] == 2) {
            shani_multi_pair(alg, keys, counters, pend[alg], 2, out);
            cnt[alg] = 0;
        }
    }
    if (cnt[FC_SHA1])
        shani_multi_pair(FC_SHA1, keys, counters, pend[FC_SHA1], 1, out);
    if (cnt[FC_SHA256])
        shani_multi_pair(FC_SHA256, keys, counters, pend[FC_SHA256], 1, out);
}

/* ------------------------------------------------------------------------ */
/* 4d. AVX-512 path: 16 messages at once in the 32-bit lanes of zmm         */
/*     registers (SHA-1, SHA-256), 8 at once in 64-bit lanes (SHA-512).     */
/*     The lanes hold consecutive counters of one key (fc_generate and the  */
/*     scans) or different keys (fc_generate_multi). The round structure   */
/*     is the portable one with every word widened to a vector; the        */
/*     boolean functions are single vpternlog instructions and rotations    */
/*     are vprold/vprord/vprorq.                                            */
/* ------------------------------------------------------------------------ */

#define FC_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))
#define FC_AVX512_INLINE                                                    \
    static inline __attribute__((always_inline)) FC_AVX512_TARGET

/* vpternlog truth tables over (x, y, z) = (0xf0, 0xcc, 0xaa). */
#define TL_CH 0xca  /* (x & y) | (~x & z) */
#define TL_PAR 0x96 /* x ^ y ^ z */
#define TL_MAJ 0xe8 /* majority */

#define V32(x) _mm512_set1_epi32(FC_I32(x))
#define V64(x) _mm512_set1_epi64((long long)(x))
#define VADD32 _mm512_add_epi32
#define VADD64 _mm512_add_epi64

/* ---- SHA-1 x16 ---- */

#define X1_W_LD(t) (w[(t)])
#define X1_W_UP(t)                                                          \
    (w[(t) & 15] = _mm512_rol_epi32(w[((t) + 13) & 15] ^ w[((t) + 8) & 15] ^ \
                                        w[((t) + 2) & 15] ^ w[(t) & 15],    \
                                    1))

#define X1_RND(a, b, c, d, e, F, K, W, t)                                   \
    do {                                                                    \
        __m512i wk_ = VADD32(W(t), V32(K));                                 \
        (e) = VADD32(VADD32((e), wk_),                                      \
                     VADD32(_mm512_rol_epi32((a), 5),                       \
                            _mm512_ternarylogic_epi32((b), (c), (d), (F)))); \
        (b) = _mm512_rol_epi32((b), 30);                                    \
    } while (0)

#define X1_RND5(F, K, W, t)                                                 \
    X1_RND(a, b, c, d, e, F, K, W, (t));                                    \
    X1_RND(e, a, b, c, d, F, K, W, (t) + 1);                                \
    X1_RND(d, e, a, b, c, F, K, W, (t) + 2);                                \
    X1_RND(c, d, e, a, b, F, K, W, (t) + 3);                                \
    X1_RND(b, c, d, e, a, F, K, W, (t) + 4)

FC_AVX512_INLINE void x16_sha1_compress(__m512i st[5], __m512i w[16])
{
    __m512i a = st[0], b = st[1], c = st[2], d = st[3], e = st[4];

    X1_RND5(TL_CH, SHA1_K0, X1_W_LD, 0);
    X1_RND5(TL_CH, SHA1_K0, X1_W_LD, 5);
    X1_RND5(TL_CH, SHA1_K0, X1_W_LD, 10);
    X1_RND(a, b, c, d, e, TL_CH, SHA1_K0, X1_W_LD, 15);
    X1_RND(e, a, b, c, d, TL_CH, SHA1_K0, X1_W_UP, 16);
    X1_RND(d, e, a, b, c, TL_CH, SHA1_K0, X1_W_UP, 17);
    X1_RND(c, d, e, a, b, TL_CH, SHA1_K0, X1_W_UP, 18);
    X1_RND(b, c, d, e, a, TL_CH, SHA1_K0, X1_W_UP, 19);
    X1_RND5(TL_PAR, SHA1_K1, X1_W_UP, 20);
    X1_RND5(TL_PAR, SHA1_K1, X1_W_UP, 25);
    X1_RND5(TL_PAR, SHA1_K1, X1_W_UP, 30);
    X1_RND5(TL_PAR, SHA1_K1, X1_W_UP, 35);
    X1_RND5(TL_MAJ, SHA1_K2, X1_W_UP, 40);
    X1_RND5(TL_MAJ, SHA1_K2, X1_W_UP, 45);
    X1_RND5(TL_MAJ, SHA1_K2, X1_W_UP, 50);
    X1_RND5(TL_MAJ, SHA1_K2, X1_W_UP, 55);
    X1_RND5(TL_PAR, SHA1_K3, X1_W_UP, 60);
    X1_RND5(TL_PAR, SHA1_K3, X1_W_UP, 65);
    X1_RND5(TL_PAR, SHA1_K3, X1_W_UP, 70);
    X1_RND5(TL_PAR, SHA1_K3, X1_W_UP, 75);

    st[0] = VADD32(st[0], a);
    st[1] = VADD32(st[1], b);
    st[2] = VADD32(st[2], c);
    st[3] = VADD32(st[3], d);
    st[4] = VADD32(st[4], e);
}

/* ---- SHA-256 x16 ---- */

#define X256_BSIG0(x)                                                       \
    (_mm512_ror_epi32((x), 2) ^ _mm512_ror_epi32((x), 13) ^                 \
     _mm512_ror_epi32((x), 22))
#define X256_BSIG1(x)                                                       \
    (_mm512_ror_epi32((x), 6) ^ _mm512_ror_epi32((x), 11) ^                 \
     _mm512_ror_epi32((x), 25))
#define X256_SSIG0(x)                                                       \
    (_mm512_ror_epi32((x), 7) ^ _mm512_ror_epi32((x), 18) ^                 \
     _mm512_srli_epi32((x), 3))
#define X256_SSIG1(x)                                                       \
    (_mm512_ror_epi32((x), 17) ^ _mm512_ror_epi32((x), 19) ^                \
     _mm512_srli_epi32((x), 10))

#define X256_W_LD(t) (w[(t)])
#define X256_W_UP(t)                                                        \
    (w[(t) & 15] = VADD32(VADD32(w[(t) & 15], w[((t) + 9) & 15]),           \
                          VADD32(X256_SSIG1(w[((t) + 14) & 15]),            \
                                 X256_SSIG0(w[((t) + 1) & 15]))))

#define X256_RND(a, b, c, d, e, f, g, h, W, t)                              \
    do {                                                                    \
        __m512i t1_ = VADD32(                                               \
            VADD32((h), VADD32(W(t), V32(K256[(t)]))),                      \
            VADD32(X256_BSIG1(e),                                           \
                   _mm512_ternarylogic_epi32((e), (f), (g), TL_CH)));       \
        (d) = VADD32((d), t1_);                                             \
        (h) = VADD32(t1_,                                                   \
                     VADD32(X256_BSIG0(a), _mm512_ternarylogic_epi32(       \
                                               (a), (b), (c), TL_MAJ)));    \
    } while (0)

#define X256_RND8(W, t)                                                     \
    X256_RND(a, b, c, d, e, f, g, h, W, (t));                               \
    X256_RND(h, a, b, c, d, e, f, g, W, (t) + 1);                           \
    X256_RND(g, h, a, b, c, d, e, f, W, (t) + 2);                           \
    X256_RND(f, g, h, a, b, c, d, e, W, (t) + 3);                           \
    X256_RND(e, f, g, h, a, b, c, d, W, (t) + 4);                           \
    X256_RND(d, e, f, g, h, a, b, c, W, (t) + 5);                           \
    X256_RND(c, d, e, f, g, h, a, b, W, (t) + 6);                           \
    X256_RND(b, c, d, e, f, g, h, a, W, (t) + 7)

FC_AVX512_INLINE void x16_sha256_compress(__m512i st[8], __m512i w[16])
{
    __m512i a = st[0], b = st[1], c = st[2], d = st[3];
    __m512i e = st[4], f = st[5], g = st[6], h = st[7];

    X256_RND8(X256_W_LD, 0);
    X256_RND8(X256_W_LD, 8);
    X256_RND8(X256_W_UP, 16);
    X256_RND8(X256_W_UP, 24);
    X256_RND8(X256_W_UP, 32);
    X256_RND8(X256_W_UP, 40);
    X256_RND8(X256_W_UP, 48);
    X256_RND8(X256_W_UP, 56);

    st[0] = VADD32(st[0], a);
    st[1] = VADD32(st[1], b);
    st[2] = VADD32(st[2], c);
    st[3] = VADD32(st[3], d);
    st[4] = VADD32(st[4], e);
    st[5] = VADD32(st[5], f);
    st[6] = VADD32(st[6], g);
    st[7] = VADD32(st[7], h);
}

/* ---- SHA-512 x8 ---- */

#define X512_BSIG0(x)                                                       \
    (_mm512_ror_epi64((x), 28) ^ _mm512_ror_epi64((x), 34) ^                \
     _mm512_ror_epi64((x), 39))
#define X512_BSIG1(x)                                                       \
    (_mm512_ror_epi64((x), 14) ^ _mm512_ror_epi64((x), 18) ^                \
     _mm512_ror_epi64((x), 41))
#define X512_SSIG0(x)                                                       \
    (_mm512_ror_epi64((x), 1) ^ _mm512_ror_epi64((x), 8) ^                  \
     _mm512_srli_epi64((x), 7))
#define X512_SSIG1(x)                                                       \
    (_mm512_ror_epi64((x), 19) ^ _mm512_ror_epi64((x), 61) ^                \
     _mm512_srli_epi64((x), 6))

#define X512_W_LD(t) (w[(t)])
#define X512_W_UP(t)                                                        \
    (w[(t) & 15] = VADD64(VADD64(w[(t) & 15], w[((t) + 9) & 15]),           \
                          VADD64(X512_SSIG1(w[((t) + 14) & 15]),            \
                                 X512_SSIG0(w[((t) + 1) & 15]))))

#define X512_RND(a, b, c, d, e, f, g, h, W, t)                              \
    do {                                                                    \
        __m512i t1_ = VADD64(                                               \
            VADD64((h), VADD64(W(t), V64(K512[(t)]))),                      \
            VADD64(X512_BSIG1(e),                                           \
                   _mm512_ternarylogic_epi64((e), (f), (g), TL_CH)));       \
        (d) = VADD64((d), t1_);                                             \
        (h) = VADD64(t1_,                                                   \
                     VADD64(X512_BSIG0(a), _mm512_ternarylogic_epi64(       \
                                               (a), (b), (c), TL_MAJ)));    \
    } while (0)

#define X512_RND8(W, t)                                                     \
    X512_RND(a, b, c, d, e, f, g, h, W, (t));                               \
    X512_RND(h, a, b, c, d, e, f, g, W, (t) + 1);                           \
    X512_RND(g, h, a, b, c, d, e, f, W, (t) + 2);                           \
    X512_RND(f, g, h, a, b, c, d, e, W, (t) + 3);                           \
    X512_RND(e, f, g, h, a, b, c, d, W, (t) + 4);                           \
    X512_RND(d, e, f, g, h, a, b, c, W, (t) + 5);                           \
    X512_RND(c, d, e, f, g, h, a, b, W, (t) + 6);                           \
    X512_RND(b, c, d, e, f, g, h, a, W, (t) + 7)

FC_AVX512_INLINE void x8_sha512_compress(__m512i st[8], __m512i w[16])
{
    __m512i a = st[0], b = st[1], c = st[2], d = st[3];
    __m512i e = st[4], f = st[5], g = st[6], h = st[7];

    X512_RND8(X512_W_LD, 0);
    X512_RND8(X512_W_LD, 8);
    X512_RND8(X512_W_UP, 16);
    X512_RND8(X512_W_UP, 24);
    X512_RND8(X512_W_UP, 32);
    X512_RND8(X512_W_UP, 40);
    X512_RND8(X512_W_UP, 48);
    X512_RND8(X512_W_UP, 56);
    X512_RND8(X512_W_UP, 64);
    X512_RND8(X512_W_UP, 72);

    st[0] = VADD64(st[0], a);
    st[1] = VADD64(st[1], b);
    st[2] = VADD64(st[2], c);
    st[3] = VADD64(st[3], d);
    st[4] = VADD64(st[4], e);
    st[5] = VADD64(st[5], f);
    st[6] = VADD64(st[6], g);
    st[7] = VADD64(st[7], h);
}

/* ---- truncation and modulus, lane-wise ---- */

/* Dynamic truncation for 16 lanes of big-endian digest words h0..h4, offset
 * from the low 4 bits of offw: bytes off..off+3 are word i = off/4 shifted
 * left by 8*(off%4), or'ed with word i+1 shifted right by 32 - 8*(off%4)
 * (a variable shift by 32 gives 0). The word is chosen with mask moves, not
 * branches. */
FC_AVX512_INLINE __m512i x16_trunc(__m512i h0, __m512i h1, __m512i h2,
                                   __m512i h3, __m512i h4, __m512i offw)
{
    const __m512i off = _mm512_and_si512(offw, V32(15));
    const __m512i idx = _mm512_srli_epi32(off, 2);
    const __m512i sh = _mm512_slli_epi32(_mm512_and_si512(off, V32(3)), 3);
    const __mmask16 m1 = _mm512_cmpeq_epi32_mask(idx, V32(1));
    const __mmask16 m2 = _mm512_cmpeq_epi32_mask(idx, V32(2));
    const __mmask16 m3 = _mm512_cmpeq_epi32_mask(idx, V32(3));
    __m512i hi = _mm512_mask_mov_epi32(h0, m1, h1);
    __m512i lo = _mm512_mask_mov_epi32(h1, m1, h2);
    hi = _mm512_mask_mov_epi32(hi, m2, h2);
    lo = _mm512_mask_mov_epi32(lo, m2, h3);
    hi = _mm512_mask_mov_epi32(hi, m3, h3);
    lo = _mm512_mask_mov_epi32(lo, m3, h4);
    return _mm512_and_si512(
        _mm512_or_si512(_mm512_sllv_epi32(hi, sh),
                        _mm512_srlv_epi32(lo, _mm512_sub_epi32(V32(32), sh))),
        V32(0x7fffffff));
}

/* Lane-wise divisor data for x16_mod / x8_mod (see fc_divmagic). For 32-bit
 * lanes, the even lanes use the low dword of each 64-bit element and the odd
 * lanes the high dword. */
typedef struct {
    __m512i d, m_even, m_odd, s_even, s_odd;
} x16_divmagic;

FC_AVX512_INLINE x16_divmagic x16_divmagic_load(__m512i d, __m512i m,
                                                __m512i s)
{
    x16_divmagic r;
    const __m512i low = V64(0xffffffffu);
    r.d = d;
    r.m_even = m; /* vpmuludq ignores the high dwords */
    r.m_odd = _mm512_srli_epi64(m, 32);
    r.s_even = _mm512_and_si512(s, low);
    r.s_odd = _mm512_srli_epi64(s, 32);
    return r;
}

/* x % d for 16 lanes of x < 2^31. */
FC_AVX512_INLINE __m512i x16_mod(__m512i x, const x16_divmagic *g)
{
    const __m512i qe =
        _mm512_srlv_epi64(_mm512_mul_epu32(x, g->m_even), g->s_even);
    const __m512i qo = _mm512_srlv_epi64(
        _mm512_mul_epu32(_mm512_srli_epi64(x, 32), g->m_odd), g->s_odd);
    /* Both quotients are < 2^31, so the high dword of qe is zero. */
    const __m512i q = _mm512_or_si512(qe, _mm512_slli_epi64(qo, 32));
    return _mm512_sub_epi32(x, _mm512_mullo_epi32(q, g->d));
}

/* x % d for 8 64-bit lanes of x < 2^31, with d, m, s in the low dwords. */
FC_AVX512_INLINE __m512i x8_mod(__m512i x, __m512i d, __m512i m, __m512i s)
{
    const __m512i q = _mm512_srlv_epi64(_mm512_mul_epu32(x, m), s);
    return _mm512_sub_epi64(x, _mm512_mul_epu32(q, d));
}

/* ---- HOTP values, one message per lane ---- */

/* 16 SHA-1 HOTP values; ist/ost are the lanes' midstates, hi/lo the
 * counter words. */
FC_AVX512_INLINE __m512i x16_sha1_values(const __m512i ist[5],
                                         const __m512i ost[5], __m512i hi,
                                         __m512i lo)
{
    __m512i w[16], s[5];
    int i;

    for (i = 0; i < 5; i++)
        s[i] = ist[i];
    w[0] = hi;
    w[1] = lo;
    w[2] = V32(0x80000000u);
    for (i = 3; i < 15; i++)
        w[i] = _mm512_setzero_si512();
    w[15] = V32(SHA1_INNER_BITS);
    x16_sha1_compress(s, w);

    for (i = 0; i < 5; i++) {
        w[i] = s[i];
        s[i] = ost[i];
    }
    w[5] = V32(0x80000000u);
    for (i = 6; i < 15; i++)
        w[i] = _mm512_setzero_si512();
    w[15] = V32(SHA1_OUTER_BITS);
    x16_sha1_compress(s, w);
    return x16_trunc(s[0], s[1], s[2], s[3], s[4], s[4]);
}

FC_AVX512_INLINE __m512i x16_sha256_values(const __m512i ist[8],
                                           const __m512i ost[8], __m512i hi,
                                           __m512i lo)
{
    __m512i w[16], s[8];
    int i;

    for (i = 0; i < 8; i++)
        s[i] = ist[i];
    w[0] = hi;
    w[1] = lo;
    w[2] = V32(0x80000000u);
    for (i = 3; i < 15; i++)
        w[i] = _mm512_setzero_si512();
    w[15] = V32(SHA256_INNER_BITS);
    x16_sha256_compress(s, w);

    for (i = 0; i < 8; i++) {
        w[i] = s[i];
        s[i] = ost[i];
    }
    w[8] = V32(0x80000000u);
    for (i = 9; i < 15; i++)
        w[i] = _mm512_setzero_si512();
    w[15] = V32(SHA256_OUTER_BITS);
    x16_sha256_compress(s, w);
    return x16_trunc(s[0], s[1], s[2], s[3], s[4], s[7]);
}

/* 8 SHA-512 HOTP values, one per 64-bit lane (below 2^31). */
FC_AVX512_INLINE __m512i x8_sha512_values(const __m512i ist[8],
                                          const __m512i ost[8], __m512i ctr)
{
    __m512i w[16], s[8], off, sh, hi, lo;
    __mmask8 m1;
    int i;

    for (i = 0; i < 8; i++)
        s[i] = ist[i];
    w[0] = ctr;
    w[1] = V64(UINT64_C(0x8000000000000000));
    for (i = 2; i < 15; i++)
        w[i] = _mm512_setzero_si512();
    w[15] = V64(SHA512_INNER_BITS);
    x8_sha512_compress(s, w);

    for (i = 0; i < 8; i++) {
        w[i] = s[i];
        s[i] = ost[i];
    }
    w[8] = V64(UINT64_C(0x8000000000000000));
    for (i = 9; i < 15; i++)
        w[i] = _mm512_setzero_si512();
    w[15] = V64(SHA512_OUTER_BITS);
    x8_sha512_compress(s, w);

    /* offset <= 15: bytes off..off+3 lie in 64-bit words off/8 and
     * off/8 + 1; take the top 32 bits of their concatenation shifted left
     * by 8*(off%8) (a variable shift by 64 gives 0). */
    off = _mm512_and_si512(s[7], V64(15));
    sh = _mm512_slli_epi64(_mm512_and_si512(off, V64(7)), 3);
    m1 = _mm512_cmpge_epu64_mask(off, V64(8));
    hi = _mm512_mask_mov_epi64(s[0], m1, s[1]);
    lo = _mm512_mask_mov_epi64(s[1], m1, s[2]);
    return _mm512_and_si512(
        _mm512_srli_epi64(
            _mm512_or_si512(_mm512_sllv_epi64(hi, sh),
                            _mm512_srlv_epi64(lo, _mm512_sub_epi64(V64(64),
                                                                   sh))),
            32),
        V64(0x7fffffff));
}

/* Store the first `count` (1..16) of 16 codes. A partial batch goes through
 * a stack buffer so that nothing beyond out[count - 1] is touched. */
FC_AVX512_INLINE void x16_store(uint32_t *out, __m512i codes, size_t count)
{
    if (count >= 16) {
        _mm512_storeu_si512((void *)out, codes);
    } else {
        uint32_t tmp[16];
        size_t j;
        _mm512_storeu_si512((void *)tmp, codes);
        for (j = 0; j < count; j++)
            out[j] = tmp[j];
        fc_wipe(tmp, sizeof tmp);
    }
}

FC_AVX512_INLINE void x8_store(uint32_t *out, __m512i codes64, size_t count)
{
    const __m256i codes = _mm512_cvtepi64_epi32(codes64);
    if (count >= 8) {
        _mm256_storeu_si256((__m256i *)out, codes);
    } else {
        uint32_t tmp[8];
        size_t j;
        _mm256_storeu_si256((__m256i *)tmp, codes);
        for (j = 0; j < count; j++)
            out[j] = tmp[j];
        fc_wipe(tmp, sizeof tmp);
    }
}

/* Counter words for lanes c, c+1, ..., c+15 (the high word is carried per
 * lane, so a 2^32 boundary inside the batch is handled). Lanes past 2^64-1
 * wrap around; the caller never stores them. */
FC_AVX512_INLINE void x16_counters(uint64_t c, __m512i *hi, __m512i *lo)
{
    const __m512i iota =
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i lo0 = V32((uint32_t)c), hi0 = V32((uint32_t)(c >> 32));
    const __m512i l = VADD32(lo0, iota);
    const __mmask16 carry = _mm512_cmplt_epu32_mask(l, lo0);
    *lo = l;
    *hi = _mm512_mask_add_epi32(hi0, carry, hi0, V32(1));
}

/* The generators. Full batches of 16 (8) are stored directly; a final
 * partial batch computes all lanes and stores the first ones. */
FC_AVX512_TARGET static void gen_sha1_avx512(const fc_key *k, uint64_t c0,
                                             size_t n, uint32_t *out)
{
    __m512i ist[5], ost[5], hi, lo;
    const fc_divmagic g = fc_divmagic_init(k->modulus);
    const x16_divmagic vg = x16_divmagic_load(V32(g.d), V32(g.m), V32(g.s));
    size_t i;

    for (i = 0; i < 5; i++) {
        ist[i] = V32(k->inner[i]);
        ost[i] = V32(k->outer[i]);
    }
    for (i = 0; i < n; i += 16) {
        x16_counters(c0 + i, &hi, &lo);
        x16_store(out + i, x16_mod(x16_sha1_values(ist, ost, hi, lo), &vg),
                  n - i);
    }
}

FC_AVX512_TARGET static void gen_sha256_avx512(const fc_key *k, uint64_t c0,
                                               size_t n, uint32_t *out)
{
    __m512i ist[8], ost[8], hi, lo;
    const fc_divmagic g = fc_divmagic_init(k->modulus);
    const x16_divmagic vg = x16_divmagic_load(V32(g.d), V32(g.m), V32(g.s));
    size_t i;

    for (i = 0; i < 8; i++) {
        ist[i] = V32(k->inner[i]);
        ost[i] = V32(k->outer[i]);
    }
    for (i = 0; i < n; i += 16) {
        x16_counters(c0 + i, &hi, &lo);
        x16_store(out + i,
                  x16_mod(x16_sha256_values(ist, ost, hi, lo), &vg), n - i);
    }
}

FC_AVX512_TARGET static void gen_sha512_avx512(const fc_key *k, uint64_t c0,
                                               size_t n, uint32_t *out)
{
    __m512i ist[8], ost[8];
    const __m512i iota = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const fc_divmagic g = fc_divmagic_init(k->modulus);
    const __m512i vd = V64(g.d), vm = V64(g.m), vs = V64(g.s);
    size_t i;

    for (i = 0; i < 8; i++) {
        ist[i] = V64(k->inner[i]);
        ost[i] = V64(k->outer[i]);
    }
    for (i = 0; i < n; i += 8) {
        const __m512i ctr = VADD64(V64(c0 + i), iota);
        x8_store(out + i,
                 x8_mod(x8_sha512_values(ist, ost, ctr), vd, vm, vs), n - i);
    }
}

/* ---- many keys: each lane its own key and counter ---- */

/* Up to 16 (8 for SHA-512) keys of one algorithm, waiting for a batch. */
typedef struct {
    size_t idx[16];
    size_t count;
} x_batch;

/* Lane-major staging area for one batch: st[word][lane]. Unused lanes
 * repeat lane 0, so every lane computes on initialised data. */
typedef struct {
    uint64_t ist[8][16], ost[8][16];
    uint64_t ctr[16];
    uint32_t d[16], m[16], s[16];
} x_stage;

static void x_stage_fill(x_stage *sg, const fc_key *const *keys,
                         const uint64_t *counters, const x_batch *b,
                         size_t lanes, size_t words)
{
    fc_divmagic g = fc_divmagic_init(keys[b->idx[0]]->modulus);
    size_t j, w;
    for (j = 0; j < lanes; j++) {
        const size_t i = b->idx[j < b->count ? j : 0];
        const fc_key *k = keys[i];
        if (k->modulus != g.d) /* keys of a fleet mostly share digits */
            g = fc_divmagic_init(k->modulus);
        for (w = 0; w < words; w++) {
            sg->ist[w][j] = k->inner[w];
            sg->ost[w][j] = k->outer[w];
        }
        sg->ctr[j] = counters[i];
        sg->d[j] = g.d;
        sg->m[j] = g.m;
        sg->s[j] = g.s;
    }
}

/* Narrow 16 staged 64-bit values to one vector of 16 dwords. */
FC_AVX512_INLINE __m512i x16_narrow(const uint64_t v[16], int shift)
{
    const __m256i a = _mm512_cvtepi64_epi32(
        _mm512_srli_epi64(_mm512_loadu_si512((const void *)v), shift));
    const __m256i b = _mm512_cvtepi64_epi32(
        _mm512_srli_epi64(_mm512_loadu_si512((const void *)(v + 8)), shift));
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

FC_AVX512_TARGET static void x_flush32(int alg, x_stage *sg,
                                       const fc_key *const *keys,
                                       const uint64_t *counters, x_batch *b,
                                       uint32_t *out)
{
    __m512i ist[8], ost[8], v;
    x16_divmagic vg;
    uint32_t codes[16];
    const size_t words = alg == FC_SHA1 ? 5 : 8;
    size_t j;

    if (b->count == 0)
        return;
    x_stage_fill(sg, keys, counters, b, 16, words);
    for (j = 0; j < words; j++) {
        ist[j] = x16_narrow(sg->ist[j], 0);
        ost[j] = x16_narrow(sg->ost[j], 0);
    }
    vg = x16_divmagic_load(_mm512_loadu_si512((const void *)sg->d),
                           _mm512_loadu_si512((const void *)sg->m),
                           _mm512_loadu_si512((const void *)sg->s));
    if (alg == FC_SHA1)
        v = x16_sha1_values(ist, ost, x16_narrow(sg->ctr, 32),
                            x16_narrow(sg->ctr, 0));
    else
        v = x16_sha256_values(ist, ost, x16_narrow(sg->ctr, 32),
                              x16_narrow(sg->ctr, 0));
    _mm512_storeu_si512((void *)codes, x16_mod(v, &vg));
    for (j = 0; j < b->count; j++)
        out[b->idx[j]] = codes[j];
    b->count = 0;
}

FC_AVX512_TARGET static void x_flush64(x_stage *sg, const fc_key *const *keys,
                                       const uint64_t *counters, x_batch *b,
                                       uint32_t *out)
{
    __m512i ist[8], ost[8], v;
    uint32_t codes[8];
    size_t j;

    if (b->count == 0)
        return;
    x_stage_fill(sg, keys, counters, b, 8, 8);
    for (j = 0; j < 8; j++) {
        ist[j] = _mm512_loadu_si512((const void *)sg->ist[j]);
        ost[j] = _mm512_loadu_si512((const void *)sg->ost[j]);
    }
    v = x8_sha512_values(ist, ost, _mm512_loadu_si512((const void *)sg->ctr));
    v = x8_mod(v,
               _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)sg->d)),
               _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)sg->m)),
               _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)sg->s)));
    _mm256_storeu_si256((__m256i *)codes, _mm512_cvtepi64_epi32(v));
    for (j = 0; j < b->count; j++)
        out[b->idx[j]] = codes[j];
    b->count = 0;
}

FC_AVX512_TARGET static void multi_avx512(const fc_key *const *keys,
                                          size_t n, const uint64_t *counters,
                                          uint32_t *out)
{
    x_batch b1, b256, b512;
    x_stage sg;
    size_t i;

    b1.count = b256.count = b512.count = 0;
    for (i = 0; i < n; i++) {
        switch (keys[i]->alg) {
        case FC_SHA1:
            b1.idx[b1.count++] = i;
            if (b1.count == 16)
                x_flush32(FC_SHA1, &sg, keys, counters, &b1, out);
            break;
        case FC_SHA256:
            b256.idx[b256.count++] = i;
            if (b256.count == 16)
                x_flush32(FC_SHA256, &sg, keys, counters, &b256, out);
            break;
        default:
            b512.idx[b512.count++] = i;
            if (b512.count == 8)
                x_flush64(&sg, keys, counters, &b512, out);
            break;
        }
    }
    x_flush32(FC_SHA1, &sg, keys, counters, &b1, out);
    x_flush32(FC_SHA256, &sg, keys, counters, &b256, out);
    x_flush64(&sg, keys, counters, &b512, out);
    if (n)
        fc_wipe(&sg, sizeof sg);
}

/* ---- CPU feature detection ---- */

static uint64_t fc_xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Paths this CPU and OS support, from cpuid (Intel SDM vol. 2A, CPUID):
 *   SHA-NI:  leaf 7 EBX bit 29 (SHA), leaf 1 ECX bits 19 (SSE4.1) and 9
 *            (SSSE3);
 *   AVX-512: leaf 7 EBX bits 16 (F), 30 (BW), 31 (VL); leaf 1 ECX bit 27
 *            (OSXSAVE) and XCR0 bits 1, 2, 5, 6, 7 (SSE, AVX, opmask, upper
 *            halves of zmm0-15, zmm16-31 enabled by the OS). */
static int fc_x86_paths(void)
{
    unsigned int a, b, c, d, ecx1, ebx7;
    int paths = 0;

    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid(1, a, b, ecx1, d);
    __cpuid_count(7, 0, a, ebx7, c, d);
    if ((ebx7 >> 29 & 1) && (ecx1 >> 19 & 1) && (ecx1 >> 9 & 1))
        paths |= 1 << FC_PATH_SHANI;
    if ((ecx1 >> 27 & 1) && (ebx7 >> 16 & 1) && (ebx7 >> 30 & 1) &&
        (ebx7 >> 31 & 1) && (fc_xgetbv0() & 0xe6) == 0xe6)
        paths |= 1 << FC_PATH_AVX512;
    return paths;
}

#endif /* FC_X86 */

/* ------------------------------------------------------------------------ */
/* 4e. path table and selection                                             */
/* ------------------------------------------------------------------------ */

/* One code path: a generator per algorithm, indexed by FC_SHA*, and an
 * optional multi-key generator (NULL: one generator call per key). */
typedef struct {
    int path;
    fc_gen_fn gen[4];
    fc_multi_fn multi;
} fc_path_impl;

static const fc_path_impl fc_portable_impl = {
    FC_PATH_PORTABLE,
    {NULL, gen_sha1_portable, gen_sha256_portable, gen_sha512_portable},
    NULL,
};

#ifdef FC_X86
/* SHA-512: no SHA-512 instructions on these CPUs; portable C. */
static const fc_path_impl fc_shani_impl = {
    FC_PATH_SHANI,
    {NULL, gen_sha1_shani, gen_sha256_shani, gen_sha512_portable},
    multi_shani,
};

static const fc_path_impl fc_avx512_impl = {
    FC_PATH_AVX512,
    {NULL, gen_sha1_avx512, gen_sha256_avx512, gen_sha512_avx512},
    multi_avx512,
};
#endif

/* Paths compiled in and supported by this CPU, as a bitmask; cpuid is read
 * once. */
static int fc_cpu_paths(void)
{
    static int cached = -1;
    int paths = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (paths < 0) {
        paths = 1 << FC_PATH_PORTABLE;
#ifdef FC_X86
        paths |= fc_x86_paths();
#endif
        __atomic_store_n(&cached, paths, __ATOMIC_RELAXED);
    }
    return paths;
}

static const fc_path_impl *fc_impl_for(int path)
{
    if (path <= 0 || path >= 31 || !(fc_cpu_paths() & (1 << path)))
        return NULL;
    switch (path) {
    case FC_PATH_PORTABLE:
        return &fc_portable_impl;
#ifdef FC_X86
    case FC_PATH_SHANI:
        return &fc_shani_impl;
    case FC_PATH_AVX512:
        return &fc_avx512_impl;
#endif
    default:
        return NULL;
    }
}

/* The fastest available path, in order of preference. AVX-512 is first:
 * 16 lanes beat one SHA-NI stream for SHA-1 and SHA-256 in bulk and window
 * scans, and it is the only fast SHA-512. */
static const fc_path_impl *fc_best_impl(void)
{
    static const int order[] = {FC_PATH_AVX512, FC_PATH_SHANI,
                                FC_PATH_PORTABLE};
    size_t i;
    for (i = 0; i < sizeof order / sizeof order[0]; i++) {
        const fc_path_impl *p = fc_impl_for(order[i]);
        if (p != NULL)
            return p;
    }
    return &fc_portable_impl;
}

/* The active path; NULL until the first call resolves FC_PATH_AUTO. Read
 * and written atomically, so fc_set_path may race with running scans (a scan
 * keeps the path it started with). */
static const fc_path_impl *fc_active_ptr = NULL;

static const fc_path_impl *fc_active(void)
{
    const fc_path_impl *p = __atomic_load_n(&fc_active_ptr, __ATOMIC_ACQUIRE);
    if (p == NULL) {
        const fc_path_impl *expect = NULL;
        p = fc_best_impl();
        if (!__atomic_compare_exchange_n(&fc_active_ptr, &expect, p, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            p = expect; /* another thread chose first */
    }
    return p;
}

/* ------------------------------------------------------------------------ */
/* 5. public API                                                            */
/* ------------------------------------------------------------------------ */

static int fc_key_ok(const fc_key *k)
{
    return k != NULL && fc_alg_ok(k->alg) && k->digits >= FC_MIN_DIGITS &&
           k->digits <= FC_MAX_DIGITS && k->modulus != 0;
}

int fc_generate(const fc_key *k, uint64_t counter0, size_t n, uint32_t *out)
{
    if (!fc_key_ok(k) || (out == NULL && n != 0))
        return FC_EINVAL;
    fc_active()->gen[k->alg](k, counter0, n, out);
    return FC_OK;
}

int fc_generate_multi(const fc_key *const *keys, size_t n,
                      const uint64_t *counters, uint32_t *out)
{
    const fc_path_impl *p;
    size_t i;

    if (n == 0)
        return FC_OK;
    if (keys == NULL || counters == NULL || out == NULL)
        return FC_EINVAL;
    for (i = 0; i < n; i++)
        if (!fc_key_ok(keys[i]))
            return FC_EINVAL;
    p = fc_active();
    if (p->multi != NULL) {
        p->multi(keys, n, counters, out);
    } else {
        for (i = 0; i < n; i++)
            p->gen[keys[i]->alg](keys[i], counters[i], 1, out + i);
    }
    return FC_OK;
}

/* Codes are produced chunk by chunk into a stack buffer and then scanned. */
#define FC_CHUNK 256

/* Record counter c if eq, without branching on eq: the slot at
 * min(count, last) is rewritten with either c or its own old value, and
 * count grows by eq. The old value is kept when the buffer is full. */
FC_INLINE void fc_record(uint64_t *m, size_t last, size_t max,
                         uint64_t *count, uint64_t c, uint64_t eq)
{
    uint64_t cnt = *count;
    size_t idx = cnt < (uint64_t)last ? (size_t)cnt : last;
    uint64_t take = (uint64_t)0 - (eq & (uint64_t)(cnt < (uint64_t)max));
    m[idx] = (c & take) | (m[idx] & ~take);
    *count = cnt + eq;
}

int64_t fc_find(const fc_key *k, uint64_t counter0, size_t n, uint32_t code,
                uint64_t *matches, size_t max_matches)
{
    uint32_t buf[FC_CHUNK];
    uint64_t sink = 0, count = 0;
    uint64_t *m;
    size_t last, done = 0;
    fc_gen_fn gen;

    if (!fc_key_ok(k) || (matches == NULL && max_matches != 0))
        return FC_EINVAL;
    gen = fc_active()->gen[k->alg];
    /* max_matches == 0: all stores go to a local slot and keep its value. */
    m = max_matches ? matches : &sink;
    last = max_matches ? max_matches - 1 : 0;

    while (done < n) {
        size_t len = n - done < FC_CHUNK ? n - done : FC_CHUNK;
        uint64_t c = counter0 + done;
        size_t i;
        gen(k, c, len, buf);
        for (i = 0; i < len; i++)
            fc_record(m, last, max_matches, &count, c + i,
                      (uint64_t)(buf[i] == code));
        done += len;
    }
    /* The buffer held upcoming codes; clear the part that was used. */
    fc_wipe(buf, (n < FC_CHUNK ? n : FC_CHUNK) * sizeof buf[0]);
    return (int64_t)count;
}

int64_t fc_find_pair(const fc_key *k, uint64_t counter0, size_t n,
                     uint32_t code1, uint32_t code2, uint64_t *matches,
                     size_t max_matches)
{
    uint32_t buf[FC_CHUNK];
    uint32_t prev;
    uint64_t sink = 0, count = 0;
    uint64_t *m;
    size_t last, done = 0;
    fc_gen_fn gen;

    if (!fc_key_ok(k) || (matches == NULL && max_matches != 0))
        return FC_EINVAL;
    if (n == 0)
        return 0;
    gen = fc_active()->gen[k->alg];
    m = max_matches ? matches : &sink;
    last = max_matches ? max_matches - 1 : 0;

    /* Rolling window: prev = code(c), buf[i] = code(c + 1). Codes for
     * counter0 .. counter0 + n are each computed once. */
    gen(k, counter0, 1, &prev);
    while (done < n) {
        size_t len = n - done < FC_CHUNK ? n - done : FC_CHUNK;
        uint64_t c = counter0 + done; /* candidate for buf[0] - 1 */
        size_t i;
        gen(k, c + 1, len, buf);
        for (i = 0; i < len; i++) {
            uint32_t cur = buf[i];
            uint64_t eq = (uint64_t)(prev == code1) & (uint64_t)(cur == code2);
            fc_record(m, last, max_matches, &count, c + i, eq);
            prev = cur;
        }
        done += len;
    }
    fc_wipe(buf, (n < FC_CHUNK ? n : FC_CHUNK) * sizeof buf[0]);
    fc_wipe(&prev, sizeof prev);
    return (int64_t)count;
}

int fc_available_paths(void)
{
    return fc_cpu_paths();
}

int fc_set_path(int path)
{
    const fc_path_impl *p;
    if (path == FC_PATH_AUTO) {
        p = fc_best_impl();
    } else {
        p = fc_impl_for(path);
        if (p == NULL)
            return FC_ENOPATH;
    }
    __atomic_store_n(&fc_active_ptr, p, __ATOMIC_RELEASE);
    return FC_OK;
}

int fc_current_path(void)
{
    return fc_active()->path;
}

const char *fc_path_name(int path)
{
    switch (path) {
    case FC_PATH_PORTABLE:
        return "portable";
    case FC_PATH_SHANI:
        return "sha-ni";
    case FC_PATH_AVX512:
        return "avx512";
    default:
        return "unknown";
    }
}
