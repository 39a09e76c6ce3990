#include "lockstep_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#define LSM_CHUNK ((int64_t)1 << 30)

int lsm_init(void) {
    int flag = 0;
    MPI_Initialized(&flag);
    if (flag) return LSM_OK;
    int rc = MPI_Init(NULL, NULL);
    if (rc != MPI_SUCCESS) return rc;
    rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return rc;
}

int lsm_finalize(void) {
    int active = 0;
    lsm_is_active(&active);
    return active ? MPI_Finalize() : LSM_OK;
}

int lsm_is_active(int *flag) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    *flag = initialized && !finalized;
    return LSM_OK;
}

int lsm_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
int lsm_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }

static int allreduce_chunked(void *buffer, int64_t count, MPI_Datatype type, size_t width) {
    char *p = (char *)buffer;
    while (count > 0) {
        int n = (int)(count < LSM_CHUNK ? count : LSM_CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, p, n, type, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
        p += (size_t)n * width;
        count -= n;
    }
    return LSM_OK;
}

int lsm_allreduce_sum_float(float *buffer, int64_t count) {
    return allreduce_chunked(buffer, count, MPI_FLOAT, sizeof(float));
}
int lsm_allreduce_sum_double(double *buffer, int64_t count) {
    return allreduce_chunked(buffer, count, MPI_DOUBLE, sizeof(double));
}
int lsm_allreduce_sum_int64(int64_t *buffer, int64_t count) {
    return allreduce_chunked(buffer, count, MPI_INT64_T, sizeof(int64_t));
}

int lsm_broadcast_bytes(void *buffer, int64_t count, int root) {
    char *p = (char *)buffer;
    while (count > 0) {
        int n = (int)(count < LSM_CHUNK ? count : LSM_CHUNK);
        int rc = MPI_Bcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
        p += n;
        count -= n;
    }
    return LSM_OK;
}

/* count bytes to or from one other rank, in chunks that fit MPI's int counts (both sides chunk alike) */
static int point_to_point(char *p, int64_t count, int peer, int sending) {
    do {
        int n = (int)(count < LSM_CHUNK ? count : LSM_CHUNK);
        int rc = sending ? MPI_Send(p, n, MPI_BYTE, peer, 0, MPI_COMM_WORLD)
                         : MPI_Recv(p, n, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        p += n;
        count -= n;
    } while (count > 0);
    return LSM_OK;
}

int lsm_send_bytes(const void *buffer, int64_t count, int to) { return point_to_point((char *)buffer, count, to, 1); }

int lsm_receive_bytes(void *buffer, int64_t count, int from) { return point_to_point(buffer, count, from, 0); }

int lsm_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

int lsm_abort(const char *message, int code) {
    if (message && *message) {
        fputs(message, stderr);
        if (message[strlen(message) - 1] != '\n') fputc('\n', stderr);
        fflush(stderr);
    }
    return MPI_Abort(MPI_COMM_WORLD, code);
}

void lsm_error_string(int code, char *buffer, int length) {
    if (length <= 0) return;
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(code, text, &n) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error %d", code);
    snprintf(buffer, (size_t)length, "%s", text);
}
