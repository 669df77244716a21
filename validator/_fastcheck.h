/* vtoken check kernel: public declarations.
 *
 * This header is read twice: by the C compiler (through _fastcheck.c) and by
 * cffi's cdef() (through _fastcheck_build.py). cdef() cannot follow #include
 * or evaluate preprocessor conditionals, so this file holds only plain
 * declarations and integer #defines. Never add #include or #if here.
 */

#define FC_SHA1 1
#define FC_SHA256 2
#define FC_SHA512 3

#define FC_OK 0
#define FC_EINVAL -1
#define FC_ENOPATH -2

#define FC_MIN_DIGITS 6
#define FC_MAX_DIGITS 10

/* CPU paths. FC_PATH_AUTO picks the fastest one the CPU supports. */
#define FC_PATH_AUTO 0
#define FC_PATH_PORTABLE 1
#define FC_PATH_SHANI 2
#define FC_PATH_AVX512 3

/* A key prepared once: the HMAC inner and outer midstates (the hash state
 * after compressing K^ipad and K^opad). SHA-1 uses 5 words of state, SHA-256
 * 8 words, SHA-512 8 64-bit words; the state is stored in uint64_t slots. */
typedef struct {
    int alg;
    int digits;
    uint32_t modulus;
    uint64_t inner[8];
    uint64_t outer[8];
} fc_key;

/* Prepare a key. Returns FC_OK, or FC_EINVAL for an unknown algorithm,
 * digits outside FC_MIN_DIGITS..FC_MAX_DIGITS, or keylen == 0. */
int fc_key_init(fc_key *k, int alg, const uint8_t *key, size_t keylen, int digits);

/* Write the codes for counters counter0 .. counter0+n-1 into out[0..n-1].
 * The caller guarantees counter0 + n - 1 does not overflow 64 bits. */
int fc_generate(const fc_key *k, uint64_t counter0, size_t n, uint32_t *out);

/* Codes for many keys at once (fleets): out[i] = the code of *keys[i] at
 * counters[i], for i < n. Keys may mix algorithms and digit counts; keys of
 * one algorithm share a batch (AVX-512: 16 lanes, 8 for SHA-512; SHA-NI:
 * 2 streams). Returns FC_OK, or FC_EINVAL (nothing written) when any key is
 * invalid or a pointer is NULL while n > 0. */
int fc_generate_multi(const fc_key *const *keys, size_t n,
                      const uint64_t *counters, uint32_t *out);

/* Scan counters counter0 .. counter0+n-1 for code, with no early exit.
 * Writes up to max_matches matching counters (in ascending order) into
 * matches and returns the total number of matches (which may exceed
 * max_matches), or a negative FC_E* value. */
int64_t fc_find(const fc_key *k, uint64_t counter0, size_t n, uint32_t code,
                uint64_t *matches, size_t max_matches);

/* Scan c in counter0 .. counter0+n-1 for code(c) == code1 and
 * code(c+1) == code2, with no early exit. Computes n+1 codes; the caller
 * guarantees counter0 + n does not overflow 64 bits. Writes up to
 * max_matches values of c and returns the total count, or FC_E*. */
int64_t fc_find_pair(const fc_key *k, uint64_t counter0, size_t n,
                     uint32_t code1, uint32_t code2,
                     uint64_t *matches, size_t max_matches);

/* Bitmask of the paths this CPU and build support: bit (1 << FC_PATH_x). */
int fc_available_paths(void);

/* Force a path (FC_PATH_AUTO restores automatic choice). Returns FC_OK or
 * FC_ENOPATH when the CPU or build lacks it. */
int fc_set_path(int path);

/* The path in use now, as FC_PATH_x. */
int fc_current_path(void);

/* Short name of a path ("portable", "sha-ni", "avx512"), or "unknown". */
const char *fc_path_name(int path);
