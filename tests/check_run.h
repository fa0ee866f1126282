/* check_run: the main() of every Check suite, in one place. */
#ifndef ORCHD_CHECK_RUN_H
#define ORCHD_CHECK_RUN_H

#include <check.h>

/* Run one suite; 0 if every test passed, 1 otherwise. */
static inline int
check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

#endif
