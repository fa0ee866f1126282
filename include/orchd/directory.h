/*
 * directory: the PostgreSQL directory of orchestrators, per worker
 * (orchd.conf(5), "Directory").
 *
 * When a database is configured, each worker keeps a db client
 * (database_connections connections plus one that LISTENs on
 * orchd_directory), one prepared look-up (DIRECTORY_LOOKUP_SQL) and a
 * bounded cache of its answers keyed by orchestrator id.
 *
 * directory_lookup() answers through its callback exactly once, and never
 * from within directory_lookup() itself: a cached answer, or a refusal
 * when no query can be sent, is deferred to the next loop iteration (a
 * zero timer), and a database answer comes from the db's own callback.
 *
 * Change notices (the schema's triggers): a notice about a vps id or a
 * user id drops the matching cache entries and looks the worker's
 * authenticated connections of the affected orchestrators up again; those
 * now unknown or disabled are closed with 4006.  When LISTEN is in effect
 * again after a lost connection, the whole cache is dropped.
 */
#ifndef ORCHD_DIRECTORY_H
#define ORCHD_DIRECTORY_H

#include "orchd/registry.h"

struct worker;
struct directory;

#define DIRECTORY_CACHE_MAX 65536 /* cached orchestrators per worker */
#define DIRECTORY_CHANNEL "orchd_directory"
#define DIRECTORY_STATEMENT "orchd_directory_orchestrator"
/*
 * The one look-up, by orchestrator id.  A site may give orchd views named
 * vps and users with these columns.
 */
#define DIRECTORY_LOOKUP_SQL                                                  \
	"SELECT v.user_id, v.organization_id, v.workspace_id, v.status, "     \
	"u.status FROM vps v JOIN users u ON u.id = v.user_id "              \
	"WHERE v.id = $1"

enum directory_status {
	DIR_OK = 0,      /* known, active: e is set */
	DIR_UNKNOWN,     /* no such orchestrator (or its user is missing) */
	DIR_DISABLED,    /* vps.status or users.status is not ACTIVE */
	DIR_UNAVAILABLE, /* no answer from the database (and none cached
			    under database_failure cached) */
};

struct directory_entry {
	char user[REGISTRY_ID_MAX];
	char org[REGISTRY_ID_MAX];       /* "" when NULL in the database */
	char workspace[REGISTRY_ID_MAX]; /* "" when NULL in the database */
};

/* e is set with DIR_OK only and is valid during the call. */
typedef void (*directory_fn)(enum directory_status st,
			     const struct directory_entry *e, void *arg);

/* NULL when the configuration names no database. */
struct directory *directory_new(struct worker *w);
/*
 * Free everything; look-ups still waiting are answered DIR_UNAVAILABLE
 * before it returns.
 */
void directory_free(struct directory *d);
/* Look orch up; cb is called exactly once, later. */
void directory_lookup(struct directory *d, const char *orch, directory_fn cb,
		      void *arg);
/* 1 when a query connection to the database is up. */
int directory_ready(const struct directory *d);
const char *directory_status_name(enum directory_status st);

#endif
