#ifndef LOCKSTEP_COPENBLAS_SHIM_H
#define LOCKSTEP_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
