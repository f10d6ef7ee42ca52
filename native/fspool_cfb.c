/*
 * SEIPD v1's bulk work, off the JavaScript thread (src/codec/seipd.ts): AES in CFB mode with a
 * zero IV (decryption), and SHA-1 over the plaintext for the MDC, in one pass over each chunk,
 * run on libuv's thread pool so that the decode worker meanwhile decompresses and writes the
 * chunk before (spec/encoding.md, "Decoding threads").
 *
 * OpenSSL is Node's own (its symbols are exported to addons): no library of ours to link.
 *
 *   ctx = cfbNew(cipher, key)      cipher: 128, 192 or 256
 *   cfbDecrypt(ctx, cts, prev, pt) -> Promise<void>
 *       cts: the ciphertext, in pieces of whole blocks (where they lie in the reads: between
 *       the SEIPD packet's parts); pt, as long as all of them, gets their plaintext:
 *       pt[i] = E(C[i-1]) ^ C[i], with C[-1] = prev (16 bytes: the previous ciphertext block,
 *       or 16 zero bytes at the start). One pool job for all the pieces of a read: a job is a
 *       hand-over to another thread and back, which costs more than the AES of a part. SHA-1
 *       runs over all plaintext but its last 20 bytes so far (held back: the end of the stream
 *       is the MDC's hash, which is not hashed). Calls on one ctx must not overlap.
 *   cfbFinal(ctx, rest, prev) -> Buffer   the plaintext of a last, incomplete block (rest:
 *       under 16 bytes), hashed the same way; at once (it is tiny).
 *   cfbDigest(ctx) -> Buffer(20)  the SHA-1 of everything hashed; the held-back 20 bytes are
 *       what the message says it should be (compared by the caller).
 *
 * CFB decryption is P[i] = E(C[i-1]) ^ C[i], so the whole chunk is one ECB call (pipelined
 * AES-NI, several times faster than OpenSSL's block-at-a-time CFB), then one XOR pass.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <node_api.h>
#include <openssl/evp.h>

typedef struct {
  EVP_CIPHER_CTX *ecb;
  EVP_MD_CTX *sha1;
  uint8_t held[20];
  size_t held_len;
  int busy;
} Cfb;

typedef struct {
  const uint8_t *p;
  size_t len;
} Piece;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref ctx_ref, cts_ref, pt_ref;
  Cfb *cfb;
  Piece *cts;
  uint32_t n;
  uint8_t *pt;
  size_t len;
  uint8_t prev[16];
  int failed;
} Job;

static void cfb_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Cfb *c = data;
  EVP_CIPHER_CTX_free(c->ecb);
  EVP_MD_CTX_free(c->sha1);
  free(c);
}

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/* cfbNew(bits, key) */
static napi_value js_cfb_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t bits;
  uint8_t *key;
  size_t key_len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_int32(env, argv[0], &bits) != napi_ok || napi_get_buffer_info(env, argv[1], (void **)&key, &key_len) != napi_ok)
    return fail(env, "cfbNew(bits, key)");
  const EVP_CIPHER *cipher = bits == 128 ? EVP_aes_128_ecb() : bits == 192 ? EVP_aes_192_ecb() : bits == 256 ? EVP_aes_256_ecb() : NULL;
  if (!cipher || key_len * 8 != (size_t)bits) return fail(env, "cfbNew: AES-128, -192 or -256 and a key of that size");
  Cfb *c = calloc(1, sizeof *c);
  if (!c) return fail(env, "cfbNew: out of memory");
  c->ecb = EVP_CIPHER_CTX_new();
  c->sha1 = EVP_MD_CTX_new();
  if (!c->ecb || !c->sha1 || EVP_EncryptInit_ex(c->ecb, cipher, NULL, key, NULL) != 1 || EVP_CIPHER_CTX_set_padding(c->ecb, 0) != 1 ||
      EVP_DigestInit_ex(c->sha1, EVP_sha1(), NULL) != 1) {
    cfb_free(env, c, NULL);
    return fail(env, "cfbNew: OpenSSL refused the cipher or SHA-1");
  }
  napi_create_external(env, c, cfb_free, NULL, &result);
  return result;
}

static int ecb(Cfb *c, const uint8_t *in, uint8_t *out, size_t len) {
  int n = 0;
  return EVP_EncryptUpdate(c->ecb, out, &n, in, (int)len) == 1 && (size_t)n == len;
}

/* Hash `p`, holding back its last 20 bytes (after hashing what was held before). */
static int hash_held_back(Cfb *c, const uint8_t *p, size_t len) {
  size_t total = c->held_len + len;
  if (total <= 20) {
    memcpy(c->held + c->held_len, p, len);
    c->held_len = total;
    return 1;
  }
  size_t out = total - 20; /* bytes that leave the held-back window */
  size_t from_held = out < c->held_len ? out : c->held_len;
  if (from_held && EVP_DigestUpdate(c->sha1, c->held, from_held) != 1) return 0;
  size_t from_p = out - from_held;
  if (from_p && EVP_DigestUpdate(c->sha1, p, from_p) != 1) return 0;
  /* The new window: what is left of the old, then the rest of p. */
  uint8_t win[20];
  size_t keep = c->held_len - from_held;
  memcpy(win, c->held + from_held, keep);
  memcpy(win + keep, p + from_p, len - from_p);
  memcpy(c->held, win, 20);
  c->held_len = 20;
  return 1;
}

/* The plaintext of one piece `ct` into `pt`, after the ciphertext block `prev`. */
static int decrypt_piece(Cfb *c, const uint8_t *prev, const uint8_t *ct, uint8_t *pt, size_t len) {
  /* E(prev), then E(C[0]) .. E(C[n-2]) into pt, shifted by a block: pt[i] = E(C[i-1]). */
  uint8_t first[16];
  if (!ecb(c, prev, first, 16)) return 0;
  if (len > 16 && !ecb(c, ct, pt + 16, len - 16)) return 0;
  memcpy(pt, first, 16);
  /* pt ^= ct, 8 bytes at a time (memcpy compiles to plain loads and stores). */
  for (size_t i = 0; i < len; i += 8) {
    uint64_t a, b;
    memcpy(&a, pt + i, 8);
    memcpy(&b, ct + i, 8);
    a ^= b;
    memcpy(pt + i, &a, 8);
  }
  return 1;
}

static void execute(napi_env env, void *data) {
  (void)env;
  Job *j = data;
  Cfb *c = j->cfb;
  const uint8_t *prev = j->prev;
  uint8_t *pt = j->pt;
  for (uint32_t k = 0; k < j->n; k++) {
    if (!decrypt_piece(c, prev, j->cts[k].p, pt, j->cts[k].len)) {
      j->failed = 1;
      return;
    }
    prev = j->cts[k].p + j->cts[k].len - 16;
    pt += j->cts[k].len;
  }
  if (!hash_held_back(c, j->pt, j->len)) j->failed = 1;
}

static void complete(napi_env env, napi_status status, void *data) {
  Job *j = data;
  j->cfb->busy = 0;
  napi_value undef;
  napi_get_undefined(env, &undef);
  if (status != napi_ok || j->failed) {
    napi_value msg, err;
    napi_create_string_utf8(env, "AES or SHA-1 failed in OpenSSL", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, j->deferred, err);
  } else {
    napi_resolve_deferred(env, j->deferred, undef);
  }
  napi_delete_reference(env, j->ctx_ref);
  napi_delete_reference(env, j->cts_ref);
  napi_delete_reference(env, j->pt_ref);
  napi_delete_async_work(env, j->work);
  free(j->cts);
  free(j);
}

/* cfbDecrypt(ctx, cts, prev, pt) -> Promise */
static napi_value js_cfb_decrypt(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], promise, name;
  Cfb *c;
  uint8_t *prev, *pt;
  size_t prev_len, pt_len;
  uint32_t n = 0;
  bool is_array = false;
  const char *usage = "cfbDecrypt(ctx, cts, prev, pt): pieces of whole blocks, a 16-byte prev, pt as long as the pieces";
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4 || napi_get_value_external(env, argv[0], (void **)&c) != napi_ok || napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[1], &n) != napi_ok || n == 0 || napi_get_buffer_info(env, argv[2], (void **)&prev, &prev_len) != napi_ok ||
      napi_get_buffer_info(env, argv[3], (void **)&pt, &pt_len) != napi_ok || prev_len != 16)
    return fail(env, usage);
  if (c->busy) return fail(env, "cfbDecrypt: a call on this ctx is still running");
  Piece *cts = calloc(n, sizeof *cts);
  if (!cts) return fail(env, "cfbDecrypt: out of memory");
  size_t total = 0;
  for (uint32_t k = 0; k < n; k++) {
    napi_value el;
    if (napi_get_element(env, argv[1], k, &el) != napi_ok || napi_get_buffer_info(env, el, (void **)&cts[k].p, &cts[k].len) != napi_ok || cts[k].len == 0 ||
        cts[k].len % 16 != 0) {
      free(cts);
      return fail(env, usage);
    }
    total += cts[k].len;
  }
  if (total != pt_len) {
    free(cts);
    return fail(env, usage);
  }
  Job *j = calloc(1, sizeof *j);
  if (!j) {
    free(cts);
    return fail(env, "cfbDecrypt: out of memory");
  }
  j->cfb = c;
  j->cts = cts;
  j->n = n;
  j->pt = pt;
  j->len = pt_len;
  memcpy(j->prev, prev, 16);
  /* The buffers stay alive (and in place) while the thread pool works on them: the array holds
     the pieces, and nothing changes it until the promise settles (src/codec/seipd.ts). */
  napi_create_reference(env, argv[0], 1, &j->ctx_ref);
  napi_create_reference(env, argv[1], 1, &j->cts_ref);
  napi_create_reference(env, argv[3], 1, &j->pt_ref);
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "fspool:cfb", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  c->busy = 1;
  napi_queue_async_work(env, j->work);
  return promise;
}

/* cfbFinal(ctx, rest, prev) -> Buffer */
static napi_value js_cfb_final(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  Cfb *c;
  uint8_t *rest, *prev;
  size_t rest_len, prev_len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || napi_get_value_external(env, argv[0], (void **)&c) != napi_ok || napi_get_buffer_info(env, argv[1], (void **)&rest, &rest_len) != napi_ok ||
      napi_get_buffer_info(env, argv[2], (void **)&prev, &prev_len) != napi_ok || rest_len >= 16 || prev_len != 16)
    return fail(env, "cfbFinal(ctx, rest, prev): under 16 bytes, a 16-byte prev");
  if (c->busy) return fail(env, "cfbFinal: a call on this ctx is still running");
  uint8_t ks[16], pt[16];
  if (!ecb(c, prev, ks, 16)) return fail(env, "cfbFinal: AES failed in OpenSSL");
  for (size_t i = 0; i < rest_len; i++) pt[i] = ks[i] ^ rest[i];
  if (!hash_held_back(c, pt, rest_len)) return fail(env, "cfbFinal: SHA-1 failed in OpenSSL");
  void *out;
  napi_create_buffer_copy(env, rest_len, pt, &out, &result);
  return result;
}

/* cfbDigest(ctx) -> Buffer(20) */
static napi_value js_cfb_digest(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  Cfb *c;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&c) != napi_ok) return fail(env, "cfbDigest(ctx)");
  if (c->busy) return fail(env, "cfbDigest: a call on this ctx is still running");
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(c->sha1, md, &n) != 1 || n != 20) return fail(env, "cfbDigest: SHA-1 failed in OpenSSL");
  void *out;
  napi_create_buffer_copy(env, 20, md, &out, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "cfbNew", NAPI_AUTO_LENGTH, js_cfb_new, NULL, &fn);
  napi_set_named_property(env, exports, "cfbNew", fn);
  napi_create_function(env, "cfbDecrypt", NAPI_AUTO_LENGTH, js_cfb_decrypt, NULL, &fn);
  napi_set_named_property(env, exports, "cfbDecrypt", fn);
  napi_create_function(env, "cfbFinal", NAPI_AUTO_LENGTH, js_cfb_final, NULL, &fn);
  napi_set_named_property(env, exports, "cfbFinal", fn);
  napi_create_function(env, "cfbDigest", NAPI_AUTO_LENGTH, js_cfb_digest, NULL, &fn);
  napi_set_named_property(env, exports, "cfbDigest", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
