// A reader for the safetensors format (huggingface/safetensors):
//
//   [8 bytes: little-endian u64 N][N bytes: JSON header][data section]
//
// The header maps tensor names to {"dtype", "shape", "data_offsets":[begin,
// end]} with offsets relative to the start of the data section, plus an
// optional "__metadata__" object of strings. The file is mmapped read-only;
// every offset, shape and dtype is checked against the file size at init, so
// that later reads cannot run past the mapping whatever the file says.
#ifndef PHREX_SAFETENSORS_H
#define PHREX_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define PHREX_SAFETENSORS_MAX_DIMS 8

// Every dtype of the format is known (so that files holding, say, int64
// position ids parse); only the float ones can be read as f32.
typedef enum {
    PHREX_DTYPE_F32,
    PHREX_DTYPE_F16,
    PHREX_DTYPE_BF16,
    PHREX_DTYPE_F64,
    PHREX_DTYPE_F8_E4M3,
    PHREX_DTYPE_F8_E5M2,
    PHREX_DTYPE_I64,
    PHREX_DTYPE_I32,
    PHREX_DTYPE_I16,
    PHREX_DTYPE_I8,
    PHREX_DTYPE_U64,
    PHREX_DTYPE_U32,
    PHREX_DTYPE_U16,
    PHREX_DTYPE_U8,
    PHREX_DTYPE_BOOL,
    PHREX_DTYPE_COUNT
} phrex_dtype;

typedef struct {
    const char *name;
    phrex_dtype dtype;
    int ndim;
    int64_t shape[PHREX_SAFETENSORS_MAX_DIMS];
    size_t numel;
    size_t begin, end; // [begin, end) bytes into the data section
} phrex_safetensors_tensor;

typedef struct {
    char *path;                        // as given to init, for messages
    unsigned char *map;                // the whole file, mmapped
    size_t file_size;                  // bytes
    const unsigned char *data;         // map + 8 + header length
    size_t data_size;                  // bytes after the header
    phrex_safetensors_tensor *tensors; // (n_tensors) sorted by name
    int n_tensors;
    char *names;                       // one block holding every name
} phrex_safetensors;

// Maps `path` and validates its header. On failure `st` is left empty (safe
// to free) and the message names the file and what is wrong with it.
int phrex_safetensors_init(phrex_safetensors *st, const char *path);
void phrex_safetensors_free(phrex_safetensors *st);

// The tensor called `name`, or NULL.
const phrex_safetensors_tensor *phrex_safetensors_find(const phrex_safetensors *st, const char *name);

// Looks `name` up and checks its shape is `shape` (ndim dims). Fails with
// PHREX_ERR_FORMAT when missing, PHREX_ERR_MISMATCH when mis-shaped.
int phrex_safetensors_get(const phrex_safetensors *st, const char *name, int ndim, const int64_t *shape,
                          const phrex_safetensors_tensor **out);

// Like _get, then converts the tensor (F32, F16 or BF16) to f32 into `dst`
// (numel floats). Any other dtype fails with PHREX_ERR_MISMATCH.
int phrex_safetensors_read_f32(const phrex_safetensors *st, const char *name, int ndim, const int64_t *shape,
                               float *dst);

// "F32", "BF16", ... as spelled in the header.
const char *phrex_dtype_name(phrex_dtype dtype);
// Bytes per element.
size_t phrex_dtype_size(phrex_dtype dtype);

// Element conversions, exposed for tests. Exact (every f16 and bf16 value
// is representable in f32), including subnormals, infinities and NaNs.
float phrex_f16_to_f32(uint16_t h);
float phrex_bf16_to_f32(uint16_t h);

#endif
