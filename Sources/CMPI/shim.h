#ifndef LOCKSTEP_CMPI_SHIM_H
#define LOCKSTEP_CMPI_SHIM_H
#include <mpi.h>
#endif
