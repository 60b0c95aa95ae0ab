/*
 * A stand-in for libnvidia-ml.so.1, compiled during the tests (test/fakes/fake-nvml.ts).
 *
 * It exports the NVML symbols tokenwatt calls, with NVML's real signatures, return codes and
 * struct layouts, so that the agent's real FFI code (collectors/nvml/) runs against it unchanged.
 * Layouts and codes follow nvml.h as published by NVIDIA (e.g. NVIDIA/go-nvml pkg/nvml/nvml.h,
 * NVML API version 12): nvmlReturn_t values, nvmlFieldValue_t (40 bytes), NVML_FI_DEV_POWER_*
 * field ids, NVML_DEVICE_ARCH_* values and the *_V2_BUFFER_SIZE constants.
 *
 * Behaviour comes from a scenario file: $FAKE_NVML_SCENARIO if set, else the file
 * "fake-nvml-scenario.txt" next to this library (so that two copies of the library loaded by one
 * process from two directories run two independent scenarios). One directive a line, '#' starts
 * a comment; <g> is a GPU index; times are milliseconds since the first nvmlInit_v2 ("driver load"):
 *
 *   init_rc <code>                    nvmlInit_v2 returns this code (e.g. 9 driver not loaded)
 *   driver_version <text>
 *   gpus <n>
 *   uuid <g> <text>                   name <g> <text to end of line>
 *   arch <g> <nvmlDeviceArchitecture_t>   cc <g> <major> <minor>    limit_mw <g> <mW>
 *   mig <g> <MIG uuid> ...            MIG mode enabled with these MIG devices
 *   mig_at_ms <g> <ms> [<MIG uuid> ...]
 *                                     from this time the GPU's MIG devices are these instead (MIG
 *                                     devices created or destroyed at run time; none: MIG off)
 *   power_mw <g> <mW> <mW> ...        power trace, one value per trace step, repeated cyclically
 *   trace_step_ms <ms>                length of one trace step (default 100)
 *   instant <g> 0                     NVML_FI_DEV_POWER_INSTANT unsupported (per-field NOT_SUPPORTED)
 *   instant_off_at_ms <g> <ms>        ... and from this time on (a driver change mid-run)
 *   power_usage <g> 0                 power readings unsupported: nvmlDeviceGetPowerUsage returns
 *                                     NOT_SUPPORTED, as does the NVML_FI_DEV_POWER_AVERAGE field
 *                                     (boards or vGPU guests without power monitoring)
 *   energy <g> 0                      energy counter unsupported (Volta and older boards)
 *   energy_offset_mj <g> <mJ>         counter value at time 0
 *   reset_at_ms <g> <ms>              counter restarts from 0 at this time (driver reload)
 *   glitch <g> <from_ms> <until_ms> <mJ>  counter reads in [from, until) are this much low
 *   lost_at_ms <g> <ms>               from this time every call on the GPU returns GPU_IS_LOST
 *   recovered_at_ms <g> <ms>          ... until this time (the GPU answers again, e.g. after a reset)
 *   lost_on_hang <g> <lookups>        from the moment a configured hang begins (any function, any
 *                                     GPU), every call on the GPU returns GPU_IS_LOST, until NVML
 *                                     has refused <lookups> handle look-ups of it (by index or UUID):
 *                                     a loss tied to events, not to time
 *   handle_invalid_after_ms <g> <ms> [init]
 *                                     the GPU is reset at this time: every handle to it obtained
 *                                     before answers NVML_ERROR_GPU_IS_LOST from then on, while a
 *                                     handle obtained afterwards (nvmlDeviceGetHandleByIndex_v2 or
 *                                     nvmlDeviceGetHandleByUUID) is a different one that works.
 *                                     With "init", NVML finds the GPU again only in an NVML session
 *                                     begun after the reset (nvmlInit_v2 once every earlier
 *                                     nvmlInit_v2 was matched by nvmlShutdown, so that NVML
 *                                     enumerates afresh); until then the lookups return GPU_IS_LOST
 *   reload_after_reads <n>            the driver is reloaded right after nvmlDeviceGetTotalEnergyConsumption
 *                                     has answered n times (all GPUs together): from then on every
 *                                     call in the NVML session begun before returns
 *                                     NVML_ERROR_UNINITIALIZED; a session begun afterwards (nvmlInit_v2
 *                                     once every earlier nvmlInit_v2 was matched by nvmlShutdown)
 *                                     works, and every energy counter restarts from 0 at the reload
 *   hang <function> <g|-1> <after_ms> <duration_ms> <count> [<skip>]
 *                                     the next <count> calls of <function> (on GPU g, or any GPU
 *                                     with -1) made after <after_ms>, once <skip> such calls have
 *                                     gone through, sleep <duration_ms> first. <function>: any
 *                                     function exported here. The GPU of a call is the device's
 *                                     (a MIG device's parent GPU), the index looked up, or the GPU
 *                                     a UUID names; library-wide calls (nvmlInit_v2, nvmlShutdown,
 *                                     nvmlErrorString, nvmlSystemGetDriverVersion,
 *                                     nvmlDeviceGetCount_v2) match only -1
 *   gpus_at_ms <n> <ms>               from this time the device count is n (more GPUs than
 *                                     `gpus`: hot-added ones), seen by NVML sessions begun then
 *
 * Energy is the exact integral of the piecewise-constant power trace. nvmlDeviceGetPowerUsage
 * returns the mean power over the last second on Ampere and newer except GA100 (arch >= 7 and
 * compute capability != 8.0), and the instantaneous value otherwise, as the NVML docs describe.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- NVML ABI (values from nvml.h) ------------------------------------------------------- */
typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NO_PERMISSION 4
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_LIBRARY_NOT_FOUND 12
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_ERROR_OPERATING_SYSTEM 17
#define NVML_ERROR_LIB_RM_VERSION_MISMATCH 18
#define NVML_ERROR_UNKNOWN 999

#define NVML_VALUE_TYPE_DOUBLE 0
#define NVML_VALUE_TYPE_UNSIGNED_INT 1
#define NVML_VALUE_TYPE_UNSIGNED_LONG_LONG 3

#define NVML_FI_DEV_POWER_AVERAGE 185
#define NVML_FI_DEV_POWER_INSTANT 186
#define NVML_FI_DEV_ENERGY 191

#define NVML_DEVICE_ARCH_AMPERE 7
#define NVML_DEVICE_MIG_ENABLE 1
#define NVML_DEVICE_MIG_DISABLE 0

typedef unsigned int nvmlDeviceArchitecture_t;

typedef union nvmlValue_st {
  double dVal;
  int siVal;
  unsigned int uiVal;
  unsigned long ulVal;
  unsigned long long ullVal;
  signed long long sllVal;
  unsigned short usVal;
} nvmlValue_t;

typedef struct nvmlFieldValue_st {
  unsigned int fieldId;
  unsigned int scopeId;
  long long timestamp;
  long long latencyUsec;
  unsigned int valueType; /* nvmlValueType_t */
  nvmlReturn_t nvmlReturn;
  nvmlValue_t value;
} nvmlFieldValue_t;

_Static_assert(sizeof(nvmlFieldValue_t) == 40, "nvmlFieldValue_t must be 40 bytes");

/* ---- scenario ----------------------------------------------------------------------------- */
#define MAX_GPUS 64
#define MAX_MIG 8
#define MAX_TRACE 4096
#define MAX_HANGS 16
#define TEXT 96

typedef struct fake_device {
  int magic; /* 0x6e766d6c for a GPU, 0x4d494721 for a MIG device */
  int index;
  struct fake_device *parent;
  char uuid[TEXT];
} fake_device;

typedef struct {
  fake_device dev;
  char name[TEXT];
  unsigned int arch, cc_major, cc_minor, limit_mw;
  int mig_count;
  fake_device mig[MAX_MIG];
  long long mig_at_ms; /* -1: the MIG devices never change */
  int late_mig_count;
  fake_device late_mig[MAX_MIG];
  unsigned int trace[MAX_TRACE];
  int trace_len;
  unsigned long long prefix_uj[MAX_TRACE + 1]; /* energy of the first i trace steps */
  int instant_supported, energy_supported, power_usage_supported;
  unsigned long long energy_offset_mj;
  long long reset_at_ms, lost_at_ms, recovered_at_ms, instant_off_at_ms;
  long long glitch_from_ms, glitch_until_ms;
  unsigned long long glitch_mj;
  int lost_on_hang_lookups;          /* -1: no loss tied to a hang */
  int lost_by_hang, refused_lookups; /* under `lock` */
  long long handle_invalid_after_ms; /* -1: handles stay valid */
  int reset_needs_init;
  fake_device reset_dev; /* the handle NVML hands out after the reset (same GPU, new handle) */
} fake_gpu;

typedef struct {
  char function[64];
  int gpu;
  long long after_ms, duration_ms;
  int remaining;
  int skip; /* matching calls still to let through first */
} fake_hang;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int init_count;
static long long session_started_ms; /* when init_count last went from 0 to 1 */
static int scenario_loaded;
static int init_rc;
static int reload_after_reads; /* 0: no driver reload */
static int energy_reads;
static long long reload_ms = -1; /* when the driver was reloaded, -1 before */
static char driver_version[TEXT] = "590.48.01";
static int gpu_count;
static int late_gpu_count = -1; /* gpus_at_ms: the count from late_gpus_ms on, -1: none */
static long long late_gpus_ms = -1;
static fake_gpu gpus[MAX_GPUS];
static fake_hang hangs[MAX_HANGS];
static int hang_count;
static long long trace_step_ms = 100;
static struct timespec t0;

#define GPU_MAGIC 0x6e766d6c
#define MIG_MAGIC 0x4d494721

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)(ts.tv_sec - t0.tv_sec) * 1000 + (ts.tv_nsec - t0.tv_nsec) / 1000000;
}

/* The GPU's MIG devices now (mig_at_ms changes them at run time). */
static fake_device *migs_of(fake_gpu *g, int *count) {
  if (g->mig_at_ms >= 0 && now_ms() >= g->mig_at_ms) {
    *count = g->late_mig_count;
    return g->late_mig;
  }
  *count = g->mig_count;
  return g->mig;
}

/* GPUs present now: `gpus`, or more from `gpus_at_ms` on (hot-added). */
static int present_gpus(void) {
  return late_gpu_count > gpu_count && late_gpus_ms >= 0 && now_ms() >= late_gpus_ms ? late_gpu_count : gpu_count;
}

static void scenario_path(char *out, size_t len) {
  const char *env = getenv("FAKE_NVML_SCENARIO");
  if (env && *env) {
    snprintf(out, len, "%s", env);
    return;
  }
  Dl_info info;
  if (dladdr((void *)&scenario_path, &info) && info.dli_fname) {
    snprintf(out, len, "%s", info.dli_fname);
    char *slash = strrchr(out, '/');
    if (slash) {
      slash[1] = '\0';
      strncat(out, "fake-nvml-scenario.txt", len - strlen(out) - 1);
      return;
    }
  }
  snprintf(out, len, "fake-nvml-scenario.txt");
}

static fake_gpu *gpu_arg(const char *rest, const char **after) {
  char *end;
  long g = strtol(rest, &end, 10);
  if (end == rest || g < 0 || g >= MAX_GPUS) return NULL;
  while (*end == ' ' || *end == '\t') end++;
  *after = end;
  return &gpus[g];
}

/* MIG devices named in a directive's text, children of the GPU. */
static void read_migs(fake_gpu *gpu, const char *text, fake_device *migs, int *count) {
  char *copy = strdup(text ? text : ""), *save = NULL;
  *count = 0;
  for (char *tok = strtok_r(copy, " \t", &save); tok && *count < MAX_MIG; tok = strtok_r(NULL, " \t", &save)) {
    fake_device *m = &migs[*count];
    m->magic = MIG_MAGIC;
    m->index = (*count)++;
    m->parent = &gpu->dev;
    snprintf(m->uuid, TEXT, "%s", tok);
  }
  free(copy);
}

static void compute_prefix_sums(void) {
  for (int g = 0; g < MAX_GPUS; g++) {
    gpus[g].prefix_uj[0] = 0;
    for (int i = 0; i < gpus[g].trace_len; i++)
      gpus[g].prefix_uj[i + 1] = gpus[g].prefix_uj[i] + (unsigned long long)gpus[g].trace[i] * (unsigned long long)trace_step_ms;
  }
}

static void load_scenario(void) {
  memset(gpus, 0, sizeof(gpus));
  gpu_count = 0;
  late_gpu_count = -1;
  late_gpus_ms = -1;
  hang_count = 0;
  init_rc = 0;
  reload_after_reads = 0;
  energy_reads = 0;
  reload_ms = -1;
  trace_step_ms = 100;
  for (int g = 0; g < MAX_GPUS; g++) {
    gpus[g].dev.magic = GPU_MAGIC;
    gpus[g].dev.index = g;
    snprintf(gpus[g].dev.uuid, TEXT, "GPU-fa4e0000-0000-0000-0000-%012d", g);
    snprintf(gpus[g].name, TEXT, "NVIDIA H100 80GB HBM3");
    gpus[g].arch = 9;
    gpus[g].cc_major = 9;
    gpus[g].limit_mw = 700000;
    gpus[g].trace[0] = 70000;
    gpus[g].trace_len = 1;
    gpus[g].instant_supported = 1;
    gpus[g].power_usage_supported = 1;
    gpus[g].energy_supported = 1;
    gpus[g].reset_at_ms = -1;
    gpus[g].lost_at_ms = -1;
    gpus[g].recovered_at_ms = -1;
    gpus[g].instant_off_at_ms = -1;
    gpus[g].glitch_from_ms = -1;
    gpus[g].glitch_until_ms = -1;
    gpus[g].handle_invalid_after_ms = -1;
    gpus[g].lost_on_hang_lookups = -1;
    gpus[g].mig_at_ms = -1;
  }
  char path[PATH_MAX];
  scenario_path(path, sizeof(path));
  FILE *f = fopen(path, "r");
  if (!f) {
    compute_prefix_sums();
    for (int g = 0; g < MAX_GPUS; g++) gpus[g].reset_dev = gpus[g].dev;
    return;
  }
  char line[65536];
  while (fgets(line, sizeof(line), f)) {
    line[strcspn(line, "\r\n")] = '\0';
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    char key[64];
    int used = 0;
    if (sscanf(line, "%63s %n", key, &used) != 1) continue;
    const char *rest = line + used, *after = NULL;
    fake_gpu *gpu = NULL;
    if (strcmp(key, "init_rc") == 0) init_rc = atoi(rest);
    else if (strcmp(key, "reload_after_reads") == 0) reload_after_reads = atoi(rest);
    else if (strcmp(key, "driver_version") == 0) snprintf(driver_version, TEXT, "%s", rest);
    else if (strcmp(key, "gpus") == 0) gpu_count = atoi(rest) > MAX_GPUS ? MAX_GPUS : atoi(rest);
    else if (strcmp(key, "gpus_at_ms") == 0) {
      if (sscanf(rest, "%d %lld", &late_gpu_count, &late_gpus_ms) != 2 || late_gpu_count > MAX_GPUS) late_gpu_count = -1;
    }
    else if (strcmp(key, "trace_step_ms") == 0) trace_step_ms = atoll(rest) > 0 ? atoll(rest) : 100;
    else if (strcmp(key, "hang") == 0 && hang_count < MAX_HANGS) {
      fake_hang *h = &hangs[hang_count];
      h->skip = 0;
      if (sscanf(rest, "%63s %d %lld %lld %d %d", h->function, &h->gpu, &h->after_ms, &h->duration_ms,
                 &h->remaining, &h->skip) >= 5)
        hang_count++;
    } else if ((gpu = gpu_arg(rest, &after)) != NULL) {
      if (strcmp(key, "uuid") == 0) snprintf(gpu->dev.uuid, TEXT, "%s", after);
      else if (strcmp(key, "name") == 0) snprintf(gpu->name, TEXT, "%s", after);
      else if (strcmp(key, "arch") == 0) gpu->arch = (unsigned int)strtoul(after, NULL, 10);
      else if (strcmp(key, "cc") == 0) sscanf(after, "%u %u", &gpu->cc_major, &gpu->cc_minor);
      else if (strcmp(key, "limit_mw") == 0) gpu->limit_mw = (unsigned int)strtoul(after, NULL, 10);
      else if (strcmp(key, "instant") == 0) gpu->instant_supported = atoi(after);
      else if (strcmp(key, "power_usage") == 0) gpu->power_usage_supported = atoi(after);
      else if (strcmp(key, "energy") == 0) gpu->energy_supported = atoi(after);
      else if (strcmp(key, "energy_offset_mj") == 0) gpu->energy_offset_mj = strtoull(after, NULL, 10);
      else if (strcmp(key, "reset_at_ms") == 0) gpu->reset_at_ms = atoll(after);
      else if (strcmp(key, "glitch") == 0) sscanf(after, "%lld %lld %llu", &gpu->glitch_from_ms, &gpu->glitch_until_ms, &gpu->glitch_mj);
      else if (strcmp(key, "lost_at_ms") == 0) gpu->lost_at_ms = atoll(after);
      else if (strcmp(key, "recovered_at_ms") == 0) gpu->recovered_at_ms = atoll(after);
      else if (strcmp(key, "lost_on_hang") == 0) gpu->lost_on_hang_lookups = atoi(after);
      else if (strcmp(key, "instant_off_at_ms") == 0) gpu->instant_off_at_ms = atoll(after);
      else if (strcmp(key, "handle_invalid_after_ms") == 0) {
        char mode[16] = "";
        sscanf(after, "%lld %15s", &gpu->handle_invalid_after_ms, mode);
        gpu->reset_needs_init = strcmp(mode, "init") == 0;
      }
      else if (strcmp(key, "power_mw") == 0) {
        gpu->trace_len = 0;
        char *p = (char *)after, *end;
        while (gpu->trace_len < MAX_TRACE) {
          unsigned long v = strtoul(p, &end, 10);
          if (end == p) break;
          gpu->trace[gpu->trace_len++] = (unsigned int)v;
          p = end;
        }
        if (gpu->trace_len == 0) gpu->trace[gpu->trace_len++] = 0;
      } else if (strcmp(key, "mig") == 0) {
        read_migs(gpu, after, gpu->mig, &gpu->mig_count);
      } else if (strcmp(key, "mig_at_ms") == 0) {
        char *rest_uuids = NULL;
        gpu->mig_at_ms = strtoll(after, &rest_uuids, 10);
        read_migs(gpu, rest_uuids, gpu->late_mig, &gpu->late_mig_count);
      }
    }
  }
  fclose(f);
  compute_prefix_sums();
  for (int g = 0; g < MAX_GPUS; g++) gpus[g].reset_dev = gpus[g].dev;
}

/* ---- helpers ------------------------------------------------------------------------------ */
static int initialized(void) {
  pthread_mutex_lock(&lock);
  int ok = init_count > 0 && !(reload_ms >= 0 && session_started_ms < reload_ms);
  pthread_mutex_unlock(&lock);
  return ok;
}

/* Sleeps outside the lock when a configured hang matches, so other threads keep going. */
static void maybe_hang(const char *function, int gpu) {
  long long duration = 0;
  pthread_mutex_lock(&lock);
  long long t = now_ms();
  for (int i = 0; i < hang_count; i++) {
    fake_hang *h = &hangs[i];
    if (h->remaining > 0 && strcmp(h->function, function) == 0 && (h->gpu < 0 || h->gpu == gpu) &&
        t >= h->after_ms) {
      if (h->skip > 0) {
        h->skip--;
        continue;
      }
      h->remaining--;
      duration = h->duration_ms;
      for (int g = 0; g < MAX_GPUS; g++)
        if (gpus[g].lost_on_hang_lookups >= 0) gpus[g].lost_by_hang = 1;
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  if (duration > 0) usleep((useconds_t)(duration * 1000));
}

static fake_gpu *as_gpu(void *device) {
  fake_device *d = device;
  if (!d || d->magic != GPU_MAGIC || d->index < 0 || d->index >= present_gpus()) return NULL;
  fake_gpu *g = &gpus[d->index];
  return d == &g->dev || d == &g->reset_dev ? g : NULL;
}

static int hang_lost(const fake_gpu *g) {
  pthread_mutex_lock(&lock);
  int lost = g->lost_by_hang && g->refused_lookups < g->lost_on_hang_lookups;
  pthread_mutex_unlock(&lock);
  return lost;
}

static int is_lost(const fake_gpu *g) {
  long long t = now_ms();
  return (g->lost_at_ms >= 0 && t >= g->lost_at_ms && (g->recovered_at_ms < 0 || t < g->recovered_at_ms)) ||
         hang_lost(g);
}

/* A handle look-up refused as lost: counts towards the end of a loss tied to a hang. */
static nvmlReturn_t refuse_lookup(fake_gpu *g) {
  pthread_mutex_lock(&lock);
  if (g->lost_by_hang) g->refused_lookups++;
  pthread_mutex_unlock(&lock);
  return NVML_ERROR_GPU_IS_LOST;
}

static int reset_done(const fake_gpu *g) {
  return g->handle_invalid_after_ms >= 0 && now_ms() >= g->handle_invalid_after_ms;
}

/* The GPU is lost for this handle: lost as such, or a handle from before its reset. */
static int lost_for(const fake_gpu *g, const void *device) {
  return is_lost(g) || (device == (const void *)&g->dev && reset_done(g));
}

/* The handle a lookup hands out now, or NULL when NVML does not find the GPU again (yet). */
static fake_device *lookup_handle(fake_gpu *g) {
  if (!reset_done(g)) return &g->dev;
  pthread_mutex_lock(&lock);
  long long session = session_started_ms;
  pthread_mutex_unlock(&lock);
  if (g->reset_needs_init && session < g->handle_invalid_after_ms) return NULL;
  return &g->reset_dev;
}

/* Energy in microjoules over [0, t) ms of the cyclic trace (mW x ms = uJ), in O(1) from prefix sums. */
static unsigned long long energy_until_uj(const fake_gpu *g, long long t) {
  if (t <= 0) return 0;
  long long step = t / trace_step_ms, within = t % trace_step_ms;
  long long cycles = step / g->trace_len, rest = step % g->trace_len;
  return (unsigned long long)cycles * g->prefix_uj[g->trace_len] + g->prefix_uj[rest] +
         (unsigned long long)g->trace[rest] * (unsigned long long)within;
}

static unsigned long long trace_energy_uj(const fake_gpu *g, long long from, long long to) {
  return energy_until_uj(g, to) - energy_until_uj(g, from < 0 ? 0 : from);
}

static unsigned int instant_mw(const fake_gpu *g, long long t) {
  return g->trace[(t / trace_step_ms) % g->trace_len];
}

static unsigned int average_mw(const fake_gpu *g, long long t) {
  if (t <= 0) return instant_mw(g, 0);
  long long from = t > 1000 ? t - 1000 : 0;
  return (unsigned int)(trace_energy_uj(g, from, t) / (unsigned long long)(t - from));
}

static int power_usage_is_averaged(const fake_gpu *g) {
  return g->arch >= NVML_DEVICE_ARCH_AMPERE && g->arch != 0xffffffffu &&
         !(g->cc_major == 8 && g->cc_minor == 0);
}

static int copy_text(const char *src, char *dst, unsigned int length) {
  if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
  if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  memcpy(dst, src, strlen(src) + 1);
  return NVML_SUCCESS;
}

#define API __attribute__((visibility("default")))
#define REQUIRE_INIT()                                                                             \
  if (!initialized()) return NVML_ERROR_UNINITIALIZED
/* Also plays a configured hang of the calling function (__func__) on this GPU. */
#define REQUIRE_GPU(device, g)                                                                     \
  REQUIRE_INIT();                                                                                  \
  fake_gpu *g = as_gpu(device);                                                                    \
  if (!g) return NVML_ERROR_INVALID_ARGUMENT;                                                      \
  maybe_hang(__func__, g->dev.index);                                                              \
  if (lost_for(g, device)) return NVML_ERROR_GPU_IS_LOST

/* ---- exported NVML API -------------------------------------------------------------------- */
API nvmlReturn_t nvmlInit_v2(void) {
  pthread_mutex_lock(&lock);
  if (!scenario_loaded) {
    load_scenario();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    scenario_loaded = 1;
  }
  pthread_mutex_unlock(&lock);
  maybe_hang("nvmlInit_v2", -1);
  pthread_mutex_lock(&lock);
  if (init_count == 0) {
    if (init_rc != NVML_SUCCESS) {
      int rc = init_rc;
      scenario_loaded = 0; /* a failed init leaves nothing behind; the next try re-reads */
      pthread_mutex_unlock(&lock);
      return rc;
    }
    session_started_ms = now_ms();
  }
  init_count++;
  pthread_mutex_unlock(&lock);
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlShutdown(void) {
  maybe_hang("nvmlShutdown", -1);
  pthread_mutex_lock(&lock);
  int rc = init_count > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
  if (init_count > 0) init_count--;
  pthread_mutex_unlock(&lock);
  return rc;
}

API const char *nvmlErrorString(nvmlReturn_t result) {
  maybe_hang("nvmlErrorString", -1);
  switch (result) {
  case NVML_SUCCESS: return "Success";
  case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
  case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
  case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
  case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
  case NVML_ERROR_NOT_FOUND: return "Not Found";
  case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
  case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
  case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
  case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
  case NVML_ERROR_OPERATING_SYSTEM: return "The operating system has blocked the request.";
  case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "Driver/library version mismatch";
  default: return "Unknown Error";
  }
}

API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
  REQUIRE_INIT();
  maybe_hang("nvmlSystemGetDriverVersion", -1);
  return copy_text(driver_version, version, length);
}

API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
  REQUIRE_INIT();
  maybe_hang("nvmlDeviceGetCount_v2", -1);
  if (!deviceCount) return NVML_ERROR_INVALID_ARGUMENT;
  *deviceCount = (unsigned int)present_gpus();
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
  REQUIRE_INIT();
  maybe_hang("nvmlDeviceGetHandleByIndex_v2", index < MAX_GPUS ? (int)index : -1);
  if (!device || index >= (unsigned int)present_gpus()) return NVML_ERROR_INVALID_ARGUMENT;
  if (is_lost(&gpus[index])) return refuse_lookup(&gpus[index]);
  fake_device *handle = lookup_handle(&gpus[index]);
  if (!handle) return NVML_ERROR_GPU_IS_LOST;
  *device = handle;
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, void **device) {
  REQUIRE_INIT();
  if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
  int count = present_gpus();
  for (int i = 0; i < count; i++) {
    fake_gpu *g = &gpus[i];
    int mig_count;
    fake_device *migs = migs_of(g, &mig_count);
    int named = strcmp(g->dev.uuid, uuid) == 0;
    for (int m = 0; m < mig_count && !named; m++) named = strcmp(migs[m].uuid, uuid) == 0;
    if (named) maybe_hang("nvmlDeviceGetHandleByUUID", i);
    for (int m = 0; m < mig_count; m++) {
      if (strcmp(migs[m].uuid, uuid) == 0) {
        *device = &migs[m];
        return NVML_SUCCESS;
      }
    }
    if (strcmp(g->dev.uuid, uuid) != 0) continue;
    if (is_lost(g)) return refuse_lookup(g);
    fake_device *handle = lookup_handle(g);
    if (!handle) return NVML_ERROR_GPU_IS_LOST;
    *device = handle;
    return NVML_SUCCESS;
  }
  return NVML_ERROR_NOT_FOUND;
}

API nvmlReturn_t nvmlDeviceGetUUID(void *device, char *uuid, unsigned int length) {
  REQUIRE_INIT();
  fake_device *d = device;
  if (d && d->magic == MIG_MAGIC) {
    maybe_hang("nvmlDeviceGetUUID", d->parent->index);
    return copy_text(d->uuid, uuid, length);
  }
  fake_gpu *g = as_gpu(device);
  if (!g) return NVML_ERROR_INVALID_ARGUMENT;
  maybe_hang("nvmlDeviceGetUUID", g->dev.index);
  if (lost_for(g, device)) return NVML_ERROR_GPU_IS_LOST;
  return copy_text(g->dev.uuid, uuid, length);
}

API nvmlReturn_t nvmlDeviceGetName(void *device, char *name, unsigned int length) {
  REQUIRE_GPU(device, g);
  return copy_text(g->name, name, length);
}

API nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(void *device, unsigned int *limit) {
  REQUIRE_GPU(device, g);
  if (!limit) return NVML_ERROR_INVALID_ARGUMENT;
  *limit = g->limit_mw;
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetArchitecture(void *device, nvmlDeviceArchitecture_t *arch) {
  REQUIRE_GPU(device, g);
  if (!arch) return NVML_ERROR_INVALID_ARGUMENT;
  *arch = g->arch;
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetCudaComputeCapability(void *device, int *major, int *minor) {
  REQUIRE_GPU(device, g);
  if (!major || !minor) return NVML_ERROR_INVALID_ARGUMENT;
  *major = (int)g->cc_major;
  *minor = (int)g->cc_minor;
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetMigMode(void *device, unsigned int *currentMode, unsigned int *pendingMode) {
  REQUIRE_GPU(device, g);
  if (!currentMode || !pendingMode) return NVML_ERROR_INVALID_ARGUMENT;
  int mig_count;
  migs_of(g, &mig_count);
  if (g->arch < NVML_DEVICE_ARCH_AMPERE && mig_count == 0) return NVML_ERROR_NOT_SUPPORTED;
  *currentMode = *pendingMode = mig_count > 0 ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(void *device, unsigned int *count) {
  REQUIRE_GPU(device, g);
  if (!count) return NVML_ERROR_INVALID_ARGUMENT;
  int mig_count;
  migs_of(g, &mig_count);
  *count = mig_count > 0 ? 7 : 0; /* H100: up to 7 MIG devices; fewer may exist */
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(void *device, unsigned int index, void **migDevice) {
  REQUIRE_GPU(device, g);
  if (!migDevice) return NVML_ERROR_INVALID_ARGUMENT;
  int mig_count;
  fake_device *migs = migs_of(g, &mig_count);
  if (mig_count == 0) return NVML_ERROR_NOT_SUPPORTED;
  if (index >= (unsigned int)mig_count) return NVML_ERROR_NOT_FOUND;
  *migDevice = &migs[index];
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(void *device, unsigned long long *energy) {
  REQUIRE_INIT();
  fake_gpu *g = as_gpu(device);
  if (!g || !energy) return NVML_ERROR_INVALID_ARGUMENT;
  maybe_hang("nvmlDeviceGetTotalEnergyConsumption", g->dev.index);
  if (lost_for(g, device)) return NVML_ERROR_GPU_IS_LOST;
  if (!g->energy_supported) return NVML_ERROR_NOT_SUPPORTED;
  long long t = now_ms();
  pthread_mutex_lock(&lock);
  long long reset = g->reset_at_ms >= 0 && t >= g->reset_at_ms ? g->reset_at_ms : -1;
  if (reload_ms >= 0 && t >= reload_ms && reload_ms > reset) reset = reload_ms;
  if (reload_after_reads > 0 && ++energy_reads == reload_after_reads) reload_ms = t + 1; /* after this read */
  pthread_mutex_unlock(&lock);
  if (reset >= 0)
    *energy = trace_energy_uj(g, reset, t) / 1000;
  else
    *energy = g->energy_offset_mj + trace_energy_uj(g, 0, t) / 1000;
  if (t >= g->glitch_from_ms && t < g->glitch_until_ms && *energy >= g->glitch_mj) *energy -= g->glitch_mj;
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetPowerUsage(void *device, unsigned int *power) {
  REQUIRE_INIT();
  fake_gpu *g = as_gpu(device);
  if (!g || !power) return NVML_ERROR_INVALID_ARGUMENT;
  maybe_hang("nvmlDeviceGetPowerUsage", g->dev.index);
  if (lost_for(g, device)) return NVML_ERROR_GPU_IS_LOST;
  if (!g->power_usage_supported) return NVML_ERROR_NOT_SUPPORTED;
  long long t = now_ms();
  *power = power_usage_is_averaged(g) ? average_mw(g, t) : instant_mw(g, t);
  return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetFieldValues(void *device, int valuesCount, nvmlFieldValue_t *values) {
  REQUIRE_INIT();
  fake_gpu *g = as_gpu(device);
  if (!g || !values || valuesCount <= 0) return NVML_ERROR_INVALID_ARGUMENT;
  maybe_hang("nvmlDeviceGetFieldValues", g->dev.index);
  if (lost_for(g, device)) return NVML_ERROR_GPU_IS_LOST;
  long long t = now_ms();
  struct timeval tv;
  gettimeofday(&tv, NULL);
  for (int i = 0; i < valuesCount; i++) {
    nvmlFieldValue_t *v = &values[i];
    v->timestamp = (long long)tv.tv_sec * 1000000 + tv.tv_usec;
    v->latencyUsec = 0;
    v->nvmlReturn = NVML_SUCCESS;
    int instant = g->instant_supported && (g->instant_off_at_ms < 0 || t < g->instant_off_at_ms);
    if (v->fieldId == NVML_FI_DEV_POWER_INSTANT && instant && v->scopeId == 0) {
      v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
      v->value.uiVal = instant_mw(g, t);
    } else if (v->fieldId == NVML_FI_DEV_POWER_AVERAGE && g->power_usage_supported && power_usage_is_averaged(g) &&
               v->scopeId == 0) {
      v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
      v->value.uiVal = average_mw(g, t);
    } else {
      v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
    }
  }
  return NVML_SUCCESS;
}
