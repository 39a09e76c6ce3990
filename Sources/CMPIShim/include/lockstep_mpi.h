#ifndef LOCKSTEP_MPI_H
#define LOCKSTEP_MPI_H
/*
 * Lockstep's door to MPI: plain C types only (ints, floats, byte buffers, status codes), so no
 * MPI type crosses into Swift. Every call returns LSM_OK (0) or an MPI error code; the error is
 * described by lsm_error_string. Errors on MPI_COMM_WORLD are returned, not fatal.
 */
#include <stdint.h>

#define LSM_OK 0

/* Initialises MPI (once per process). */
int lsm_init(void);
/* Finalises MPI. */
int lsm_finalize(void);
/* *flag = 1 when MPI is initialised and not finalised. */
int lsm_is_active(int *flag);
int lsm_rank(int *rank);
int lsm_size(int *size);

/* In-place element-wise sums over all ranks (counts of any size; split internally). */
int lsm_allreduce_sum_float(float *buffer, int64_t count);
int lsm_allreduce_sum_double(double *buffer, int64_t count);
int lsm_allreduce_sum_int64(int64_t *buffer, int64_t count);

/* Copies count bytes from root's buffer into every rank's. */
int lsm_broadcast_bytes(void *buffer, int64_t count, int root);
/* Sends count bytes to rank `to`; receives count bytes from rank `from` (blocking, in order). */
int lsm_send_bytes(const void *buffer, int64_t count, int to);
int lsm_receive_bytes(void *buffer, int64_t count, int from);
int lsm_barrier(void);
/* Stops every rank of the job with the given exit code after printing message on stderr. */
int lsm_abort(const char *message, int code);
/* Writes MPI's description of an error code into buffer (always NUL-terminated). */
void lsm_error_string(int code, char *buffer, int length);
#endif
