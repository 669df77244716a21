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
 *      for counters c0..c0+n-1. Only the portable path exists now; a SHA-NI or
 *      AVX-512 path adds its own generators (compiled with
 *      __attribute__((target(...)))) and an fc_path_impl entry, and
 *      fc_cpu_paths() learns to detect it with cpuid.
 *   5. the public API: fc_generate, fc_find and fc_find_pair call the active
 *      path's generator chunk by chunk, so every path gets find/find_pair for
 *      free.
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

/* One code path: a generator per algorithm, indexed by FC_SHA*. */
typedef struct {
    int path;
    fc_gen_fn gen[4];
} fc_path_impl;

static const fc_path_impl fc_portable_impl = {
    FC_PATH_PORTABLE,
    {NULL, gen_sha1_portable, gen_sha256_portable, gen_sha512_portable},
};

/* Paths compiled in and supported by this CPU, as a bitmask. Later paths
 * (SHA-NI, AVX-512) add their bits here after a cpuid check. */
static int fc_cpu_paths(void)
{
    return 1 << FC_PATH_PORTABLE;
}

static const fc_path_impl *fc_impl_for(int path)
{
    if (path <= 0 || path >= 31 || !(fc_cpu_paths() & (1 << path)))
        return NULL;
    switch (path) {
    case FC_PATH_PORTABLE:
        return &fc_portable_impl;
    default:
        return NULL;
    }
}

/* The fastest available path, in order of preference. */
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

/* The active path. Starts as the portable one (always valid); once cpuid-
 * selected paths exist, the first public call resolves AUTO. */
static const fc_path_impl *fc_active = &fc_portable_impl;

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
    fc_active->gen[k->alg](k, counter0, n, out);
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
    gen = fc_active->gen[k->alg];
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
    gen = fc_active->gen[k->alg];
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
        fc_active = fc_best_impl();
        return FC_OK;
    }
    p = fc_impl_for(path);
    if (p == NULL)
        return FC_ENOPATH;
    fc_active = p;
    return FC_OK;
}

int fc_current_path(void)
{
    return fc_active->path;
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
