/* SKELETON: replaced by its owner. */
#include "config.h"

#include <stdio.h>

#include "orchctl.h"

int
orchctl_bench(int argc, char **argv, const struct orchctl_opts *o)
{
	(void)argc;
	(void)argv;
	(void)o;
	fprintf(stderr, "orchctl: bench: not implemented yet\n");
	return ORCHCTL_FAIL;
}
