/*
 * directory: the PostgreSQL directory of orchestrators, per worker
 * (orchd.conf(5), "Directory").
 *
 * When a database is configured, each worker keeps a db client
 * (database_connections connections plus one that LISTENs on
 * orchd_directory), one prepared look-up (DIRECTORY_LOOKUP_SQL), a
 * bounded cache of its answers keyed by orchestrator id, and the channels
 * of the users it has connections of (DIRECTORY_MEMBERS_SQL, below).
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
 *
 * Channel membership: the channels of each user with a connection on this
 * worker (DIRECTORY_MEMBERS_SQL), loaded when its first connection takes
 * a reference (directory_members_get()), shared by all its connections,
 * and freed with the last reference.  A channel_members notice re-queries
 * the set of the user it names; DB_LISTENING re-queries every set.  While
 * a re-query runs, the previous set answers.  A set whose load failed
 * answers "not a member" and is asked again every second.
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

#define DIRECTORY_MEMBERS_STATEMENT "orchd_directory_channels"
/* The channels of a user, by user id. */
#define DIRECTORY_MEMBERS_SQL                                                 \
	"SELECT channel_id FROM channel_members "                             \
	"WHERE user_id = $1 AND left_at IS NULL"
/*
 * Channels kept per user; beyond, the rest of the answer is ignored (and
 * logged): events of those channels do not reach the user.
 */
#define DIRECTORY_MEMBERS_MAX 10000
#define DIRECTORY_MEMBERS_RETRY_MS 1000

struct directory_members; /* the channels of one user */

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
/*
 * A reference to the channels of user, loaded now when they are not (the
 * load answers later).  Never NULL.
 */
struct directory_members *directory_members_get(struct directory *d,
						const char *user);
/* Give a reference back; the last one frees the set. */
void directory_members_put(struct directory *d, struct directory_members *m);
/*
 * 1 when the set is being loaded for the first time: cb(arg) is then called
 * exactly once, later, when that load ends (loaded or failed; also from
 * directory_free()).  0 when there is nothing to wait for (loaded, or the
 * last load failed): cb is not called.
 */
int directory_members_wait(struct directory_members *m, void (*cb)(void *),
			   void *arg);
/* 1 if the user is a member of channel (0 while the set is not loaded). */
int directory_members_has(const struct directory_members *m,
			  const char *channel);
const char *directory_status_name(enum directory_status st);

#endif
