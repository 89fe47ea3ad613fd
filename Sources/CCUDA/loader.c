/* Run-time loader for the CUDA libraries declared in CCUDA.h (dlopen + dlsym, no link-time dependency). */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* dlinfo: the file a library was found in */
#endif
#include "CCUDA.h"

#if defined(__linux__) || defined(__APPLE__)
#include <dlfcn.h>
#include <glob.h>
#if defined(__linux__)
#include <link.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *symbol;
    size_t offset;
} ccuda_symbol;

#define CCUDA_SYMBOL_DRIVER(ret, name, params, symbol) {symbol, offsetof(CCUDADriverAPI, name)},
#define CCUDA_SYMBOL_CUBLASLT(ret, name, params, symbol) {symbol, offsetof(CCUDACublasLtAPI, name)},
#define CCUDA_SYMBOL_CUDNN(ret, name, params, symbol) {symbol, offsetof(CCUDACudnnAPI, name)},
#define CCUDA_SYMBOL_NVRTC(ret, name, params, symbol) {symbol, offsetof(CCUDANvrtcAPI, name)},

static const ccuda_symbol driver_symbols[] = {CCUDA_DRIVER_FUNCTIONS(CCUDA_SYMBOL_DRIVER){NULL, 0}};
static const ccuda_symbol cublaslt_symbols[] = {CCUDA_CUBLASLT_FUNCTIONS(CCUDA_SYMBOL_CUBLASLT){NULL, 0}};
static const ccuda_symbol cudnn_symbols[] = {CCUDA_CUDNN_FUNCTIONS(CCUDA_SYMBOL_CUDNN){NULL, 0}};
static const ccuda_symbol nvrtc_symbols[] = {CCUDA_NVRTC_FUNCTIONS(CCUDA_SYMBOL_NVRTC){NULL, 0}};

static const char *const driver_names[] = {"libcuda.so.1", "libcuda.so", NULL};
static const char *const cublaslt_names[] = {"libcublasLt.so.13", "libcublasLt.so.12", NULL};
static const char *const cudnn_names[] = {"libcudnn.so.9", NULL};
static const char *const nvrtc_names[] = {"libnvrtc.so.13", "libnvrtc.so.12", NULL};

typedef struct {
    const char *const *names;
    const ccuda_symbol *symbols;
    size_t tableSize;
    int attempted;
    void *table;
    void *handle;
    char message[2048];
    char path[1024];
} ccuda_library_state;

static CCUDADriverAPI driver_table;
static CCUDACublasLtAPI cublaslt_table;
static CCUDACudnnAPI cudnn_table;
static CCUDANvrtcAPI nvrtc_table;

static ccuda_library_state states[4] = {
    {driver_names, driver_symbols, sizeof(CCUDADriverAPI), 0, NULL, NULL, {0}, {0}},
    {cublaslt_names, cublaslt_symbols, sizeof(CCUDACublasLtAPI), 0, NULL, NULL, {0}, {0}},
    {cudnn_names, cudnn_symbols, sizeof(CCUDACudnnAPI), 0, NULL, NULL, {0}, {0}},
    {nvrtc_names, nvrtc_symbols, sizeof(CCUDANvrtcAPI), 0, NULL, NULL, {0}, {0}},
};
static void *tables[4] = {&driver_table, &cublaslt_table, &cudnn_table, &nvrtc_table};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* NVRTC opens its builtins library by name; when we found NVRTC in a folder the loader does not
   search (a pip wheel, $SSD_CUDA_LIBRARY_PATH), load the builtins from that folder first. */
static void preload_nvrtc_builtins(const char *dir) {
    char pattern[1100];
    snprintf(pattern, sizeof pattern, "%s/libnvrtc-builtins.so.*", dir);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            if (strstr(g.gl_pathv[i], ".alt.") == NULL) { dlopen(g.gl_pathv[i], RTLD_NOW | RTLD_GLOBAL); }
        }
        globfree(&g);
    }
}

static void *try_open(const char *dir, const char *name, int isNVRTC, char *lastError, size_t lastErrorLength, char *path, size_t pathLength) {
    char full[1100];
    if (dir && *dir) {
        snprintf(full, sizeof full, "%s/%s", dir, name);
        if (isNVRTC) preload_nvrtc_builtins(dir);
    } else {
        snprintf(full, sizeof full, "%s", name);
    }
    void *handle = dlopen(full, RTLD_NOW | RTLD_LOCAL);
    if (handle) {
        snprintf(path, pathLength, "%s", full);
#if defined(__linux__)
        /* Found by the loader's own search: the file it resolved, so that the path is absolute. */
        struct link_map *map = NULL;
        if (!(dir && *dir) && dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name && map->l_name[0] == '/')
            snprintf(path, pathLength, "%s", map->l_name);
#endif
    } else {
        const char *e = dlerror();
        /* A file that exists but fails to load is worth reporting over "not found". */
        if (e && (strstr(e, "No such file") == NULL || lastError[0] == 0)) snprintf(lastError, lastErrorLength, "%s", e);
    }
    return handle;
}

static void *open_library(ccuda_library_state *s, int isNVRTC, const char *extraPath) {
    char lastError[512] = {0};
    const char *envValue = getenv("SSD_CUDA_LIBRARY_PATH");
    char envBuffer[4096];
    snprintf(envBuffer, sizeof envBuffer, "%s%s%s", extraPath ? extraPath : "", (extraPath && envValue) ? ":" : "",
             envValue ? envValue : "");
    const char *env = envBuffer[0] ? envBuffer : NULL;
    /* 1. $SSD_CUDA_LIBRARY_PATH */
    if (env && *env) {
        char *copy = strdup(env);
        char *save = NULL;
        for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
            for (const char *const *n = s->names; *n; n++) {
                void *h = try_open(dir, *n, isNVRTC, lastError, sizeof lastError, s->path, sizeof s->path);
                if (h) { free(copy); return h; }
            }
        }
        free(copy);
    }
    /* 2. the dynamic loader's path */
    for (const char *const *n = s->names; *n; n++) {
        void *h = try_open(NULL, *n, 0, lastError, sizeof lastError, s->path, sizeof s->path);
        if (h) return h;
    }
    /* 3. the usual CUDA toolkit folders */
    const char *patterns[] = {"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
                              "/usr/local/cuda-*/targets/x86_64-linux/lib", "/usr/local/cuda-*/lib64", NULL};
    for (const char **p = patterns; *p; p++) {
        glob_t g;
        if (glob(*p, GLOB_ONLYDIR, NULL, &g) != 0) continue;
        /* newest toolkit first: glob sorts ascending */
        for (size_t i = g.gl_pathc; i-- > 0;) {
            for (const char *const *n = s->names; *n; n++) {
                void *h = try_open(g.gl_pathv[i], *n, isNVRTC, lastError, sizeof lastError, s->path, sizeof s->path);
                if (h) { globfree(&g); return h; }
            }
        }
        globfree(&g);
    }
    char names[256] = {0};
    for (const char *const *n = s->names; *n; n++) {
        if (names[0]) strncat(names, " or ", sizeof names - strlen(names) - 1);
        strncat(names, *n, sizeof names - strlen(names) - 1);
    }
    snprintf(s->message, sizeof s->message,
             "%s not found (searched $SSD_CUDA_LIBRARY_PATH=%s, the loader path, /usr/local/cuda/lib64, "
             "/usr/local/cuda*/targets/x86_64-linux/lib)%s%s",
             names, (env && *env) ? env : "(unset)", lastError[0] ? "; last error: " : "", lastError);
    return NULL;
}

const void *ccuda_load(CCUDALibrary library, char *message, size_t messageLength, char *path, size_t pathLength) {
    return ccuda_load_searching(library, NULL, message, messageLength, path, pathLength);
}

const void *ccuda_load_searching(CCUDALibrary library, const char *extraPath, char *message, size_t messageLength, char *path,
                                 size_t pathLength) {
    if ((int)library < 0 || (int)library > 3) {
        if (message && messageLength) snprintf(message, messageLength, "unknown CUDA library %d", (int)library);
        return NULL;
    }
    pthread_mutex_lock(&lock);
    ccuda_library_state *s = &states[library];
    if (!s->attempted) {
        s->attempted = 1;
        void *handle = open_library(s, library == CCUDA_LIBRARY_NVRTC, extraPath);
        if (handle) {
            char *table = (char *)tables[library];
            int ok = 1;
            for (const ccuda_symbol *sym = s->symbols; sym->symbol; sym++) {
                void *f = dlsym(handle, sym->symbol);
                if (!f) {
                    snprintf(s->message, sizeof s->message, "symbol %s is missing in %s", sym->symbol, s->path);
                    ok = 0;
                    break;
                }
                memcpy(table + sym->offset, &f, sizeof f);
            }
            if (ok) {
                s->table = table;
                s->handle = handle;
            } else {
                dlclose(handle);
            }
        }
    }
    const void *result = s->table;
    if (message && messageLength) snprintf(message, messageLength, "%s", result ? "" : s->message);
    if (path && pathLength) snprintf(path, pathLength, "%s", result ? s->path : "");
    pthread_mutex_unlock(&lock);
    return result;
}

#define CCUDA_SYMBOL_GRAPH(ret, name, params, symbol) {symbol, offsetof(CCUDAGraphAPI, name)},
static const ccuda_symbol graph_symbols[] = {CCUDA_GRAPH_FUNCTIONS(CCUDA_SYMBOL_GRAPH){NULL, 0}};
#define CCUDA_SYMBOL_CUDNN_EXTRA(ret, name, params, symbol) {symbol, offsetof(CCUDACudnnExtraAPI, name)},
static const ccuda_symbol cudnn_extra_symbols[] = {CCUDA_CUDNN_EXTRA_FUNCTIONS(CCUDA_SYMBOL_CUDNN_EXTRA){NULL, 0}};
#define CCUDA_SYMBOL_CUDNN_GRAPH(ret, name, params, symbol) {symbol, offsetof(CCUDACudnnGraphAPI, name)},
static const ccuda_symbol cudnn_graph_symbols[] = {CCUDA_CUDNN_GRAPH_FUNCTIONS(CCUDA_SYMBOL_CUDNN_GRAPH){NULL, 0}};

/* Resolves an optional group of `symbols` (`what`) into `table` (`size` bytes) from the already opened
 * `library` (`libraryName`): all of them (returns 1) or none (returns 0, the table zeroed, `message` naming the
 * missing symbols and the file, or saying that the library is not loaded). */
static int load_optional(CCUDALibrary library, const char *libraryName, const ccuda_symbol *symbols, void *table, size_t size,
                         const char *what, char *message, size_t messageLength) {
    if (message && messageLength) message[0] = 0;
    if (!table) return 0;
    memset(table, 0, size);
    pthread_mutex_lock(&lock);
    void *handle = states[library].handle;
    char path[1024];
    snprintf(path, sizeof path, "%s", states[library].path);
    pthread_mutex_unlock(&lock);
    if (!handle) {
        if (message && messageLength) snprintf(message, messageLength, "the %s library is not loaded", libraryName);
        return 0;
    }
    char missing[1024] = {0};
    for (const ccuda_symbol *sym = symbols; sym->symbol; sym++) {
        void *f = dlsym(handle, sym->symbol);
        if (!f) {
            if (missing[0]) strncat(missing, ", ", sizeof missing - strlen(missing) - 1);
            strncat(missing, sym->symbol, sizeof missing - strlen(missing) - 1);
            continue;
        }
        memcpy((char *)table + sym->offset, &f, sizeof f);
    }
    if (missing[0]) {
        memset(table, 0, size);
        if (message && messageLength) snprintf(message, messageLength, "%s symbols missing in %s: %s", what, path, missing);
        return 0;
    }
    return 1;
}

int ccuda_load_graph_api(CCUDAGraphAPI *table, char *message, size_t messageLength) {
    return load_optional(CCUDA_LIBRARY_DRIVER, "CUDA driver", graph_symbols, table, sizeof *table, "CUDA graph", message, messageLength);
}

int ccuda_load_cudnn_extra_api(CCUDACudnnExtraAPI *table, char *message, size_t messageLength) {
    return load_optional(CCUDA_LIBRARY_CUDNN, "cuDNN", cudnn_extra_symbols, table, sizeof *table, "cuDNN", message, messageLength);
}

int ccuda_load_cudnn_graph_api(CCUDACudnnGraphAPI *table, char *message, size_t messageLength) {
    return load_optional(CCUDA_LIBRARY_CUDNN, "cuDNN", cudnn_graph_symbols, table, sizeof *table, "cuDNN graph API", message,
                         messageLength);
}

#else
static int unsupported(char *message, size_t messageLength) {
    if (message && messageLength) {
        const char *text = "CUDA is only supported on Linux";
        size_t i = 0;
        for (; text[i] && i + 1 < messageLength; i++) message[i] = text[i];
        message[i] = 0;
    }
    return 0;
}

int ccuda_load_graph_api(CCUDAGraphAPI *table, char *message, size_t messageLength) {
    (void)table;
    return unsupported(message, messageLength);
}

int ccuda_load_cudnn_extra_api(CCUDACudnnExtraAPI *table, char *message, size_t messageLength) {
    (void)table;
    return unsupported(message, messageLength);
}

int ccuda_load_cudnn_graph_api(CCUDACudnnGraphAPI *table, char *message, size_t messageLength) {
    (void)table;
    return unsupported(message, messageLength);
}

const void *ccuda_load(CCUDALibrary library, char *message, size_t messageLength, char *path, size_t pathLength) {
    return ccuda_load_searching(library, 0, message, messageLength, path, pathLength);
}

const void *ccuda_load_searching(CCUDALibrary library, const char *extraPath, char *message, size_t messageLength, char *path,
                                 size_t pathLength) {
    (void)library;
    (void)extraPath;
    if (path && pathLength) path[0] = 0;
    unsupported(message, messageLength);
    return 0;
}
#endif
