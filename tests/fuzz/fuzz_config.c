/*
 * fuzz_config: the configuration file parser (config_load_string: lexer,
 * every directive's value parser, includes, the cross-directive checks),
 * then config_dump() of whatever it accepted.
 *
 * Input: the text of orchd.conf.  It is named /nonexistent/fuzz.conf, so
 * a relative include resolves to nothing; absolute paths are read as the
 * daemon would (they are part of the surface).
 * Invariants: every error reaches the error callback as one line; the
 * result is the number of errors reported; a config that loads dumps to
 * a text that loads again without errors and dumps the same again.  The
 * environment overrides are cleared first so that every run sees the same
 * input.
 */
#include "fuzz.h"

#include <string.h>

#include "orchd/config.h"

FUZZ_DECLARE(config);

#define MAX_TEXT 65536

static char *text;

struct errs {
	int n;
};

static void
collect(void *arg, const char *msg)
{
	struct errs *e = arg;

	FUZZ_ASSERT(msg != NULL && strchr(msg, '\n') == NULL);
	e->n++;
}

int
FUZZ_INIT(config)(int *argc, char ***argv)
{
	static const char *const env[] = {
	    "DAEMON_JWT_SECRET", "WS_HEARTBEAT_INTERVAL", "WS_AUTH_TIMEOUT",
	    "WS_MAX_CONNECTIONS_PER_VP", "WS_PATH"};

	for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++)
		unsetenv(env[i]);
	return 0;
}

int
FUZZ_ENTRY(config)(const uint8_t *data, size_t size)
{
	static int inited;
	struct config *cfg;
	struct errs e = {0};
	int n;

	if (!inited) {
		FUZZ_INIT(config)(NULL, NULL);
		inited = 1;
	}
	if (size > MAX_TEXT)
		return 0;
	/* A C string: the text ends at its first NUL, as a file's would not. */
	text = malloc(size + 1);
	FUZZ_ASSERT(text != NULL);
	memcpy(text, data, size);
	text[size] = '\0';
	cfg = config_new();
	FUZZ_ASSERT(cfg != NULL);
	n = config_load_string(cfg, "/nonexistent/fuzz.conf", text, collect,
			       &e);
	FUZZ_ASSERT(n == e.n);
	if (n == 0) {
		/* The dump of a valid config is a valid config. */
		char *dump = NULL;
		size_t dlen = 0;
		FILE *fp = open_memstream(&dump, &dlen);
		struct config *again;
		struct errs e2 = {0};

		FUZZ_ASSERT(fp != NULL);
		config_dump(cfg, fp);
		FUZZ_ASSERT(fclose(fp) == 0);
		again = config_new();
		config_load_string(again, "/nonexistent/fuzz.conf", dump,
				   collect, &e2);
		FUZZ_ASSERT(e2.n == 0);
		/*
		 * And dumps the same, unless something was hidden (a database
		 * URL may hold a password: the dump names it in a comment).
		 */
		if (strstr(dump, "hidden") == NULL) {
			char *dump2 = NULL;
			size_t dlen2 = 0;

			fp = open_memstream(&dump2, &dlen2);
			FUZZ_ASSERT(fp != NULL);
			config_dump(again, fp);
			FUZZ_ASSERT(fclose(fp) == 0);
			FUZZ_ASSERT(dlen2 == dlen &&
				    memcmp(dump, dump2, dlen) == 0);
			free(dump2);
		}
		config_free(again);
		free(dump);
	}
	config_free(cfg);
	free(text);
	text = NULL;
	return 0;
}
