/* SKELETON: replaced by its owner. */
#include "config.h"

#include <stdio.h>

#include "orchctl.h"

int
orchctl_status(int argc, char **argv, const struct orchctl_opts *o)
{
	(void)argc;
	(void)argv;
	(void)o;
	fprintf(stderr, "orchctl: status: not implemented yet\n");
	return ORCHCTL_FAIL;
}

int
orchctl_connections(int argc, char **argv, const struct orchctl_opts *o)
{
	(void)argc;
	(void)argv;
	(void)o;
	fprintf(stderr, "orchctl: connections: not implemented yet\n");
	return ORCHCTL_FAIL;
}

int
orchctl_kick(int argc, char **argv, const struct orchctl_opts *o)
{
	(void)argc;
	(void)argv;
	(void)o;
	fprintf(stderr, "orchctl: kick: not implemented yet\n");
	return ORCHCTL_FAIL;
}

int
orchctl_revoke(int argc, char **argv, const struct orchctl_opts *o)
{
	(void)argc;
	(void)argv;
	(void)o;
	fprintf(stderr, "orchctl: revoke: not implemented yet\n");
	return ORCHCTL_FAIL;
}

int
orchctl_loglevel(int argc, char **argv, const struct orchctl_opts *o)
{
	(void)argc;
	(void)argv;
	(void)o;
	fprintf(stderr, "orchctl: loglevel: not implemented yet\n");
	return ORCHCTL_FAIL;
}

int
orchctl_drain(int argc, char **argv, const struct orchctl_opts *o)
{
	(void)argc;
	(void)argv;
	(void)o;
	fprintf(stderr, "orchctl: drain: not implemented yet\n");
	return ORCHCTL_FAIL;
}
