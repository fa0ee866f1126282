/*
 * ctl_token: "orchctl token", minting an access token (PROTOCOL.md section
 * 8) with the config's jwt_secret_file (HS256/384/512) or a private key
 * (RS256, ES256), signed by jwt_sign() as orchd's own issuer does.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "orchctl.h"
#include "orchd/jwt.h"
#include "orchd/util.h"

#define KEY_FILE_MAX (64 * 1024)
#define TOKEN_MAX 8192
#define CLAIMS_MAX 4096
#define TTL_MAX (10ull * 365 * 86400)

/* The scopes PROTOCOL.md section 6 names, all granted by default. */
static const char *const default_scopes[] = {
    "messages:read", "channels:read", "presence:read",
    "vp:status",     "calls:join",
};

static char *
read_key(const char *cmd, const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t off = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
	    fstat(fd, &st) != 0) {
		fprintf(stderr, "orchctl: %s: %s: %s\n", cmd, path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size > KEY_FILE_MAX) {
		fprintf(stderr,
			"orchctl: %s: %s: not a key file (a regular file of "
			"1..%d bytes)\n",
			cmd, path, KEY_FILE_MAX);
		close(fd);
		return NULL;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return NULL;
	}
	while (off < (size_t)st.st_size &&
	       (n = read(fd, buf + off, (size_t)st.st_size - off)) > 0)
		off += (size_t)n;
	close(fd);
	buf[off] = '\0';
	*len = off;
	return buf;
}

int
orchctl_mint_token(const struct orchctl_opts *o, const char *cmd,
		   const struct orchctl_mint *m, char *out, size_t cap,
		   char *claims, size_t claims_cap)
{
	struct ctl_token_args a;
	const struct config *cfg = o->cfg;
	const char *alg = m->alg != NULL ? m->alg : "HS256";
	char err[256];
	const void *key;
	size_t keylen = 0;
	char *keybuf = NULL;
	int n;

	memset(&a, 0, sizeof(a));
	a.orch = m->orch;
	a.daemon = m->daemon;
	a.org = m->org;
	a.workspace = m->workspace;
	a.jti = m->jti;
	a.iat = (int64_t)time(NULL);
	a.ttl = m->ttl;
	if (a.ttl == 0)
		a.ttl = cfg != NULL ? cfg->token_lifetime_ms / 1000 : 900;
	if (cfg != NULL) {
		a.iss = cfg->jwt_issuer;
		a.aud = cfg->jwt_audience;
	}
	if (m->scopes != NULL) {
		int k = ctl_split_list(m->scopes, a.scopes, CTL_SCOPES_MAX);

		if (k < 0) {
			fprintf(stderr, "orchctl: %s: at most %d scopes\n", cmd,
				CTL_SCOPES_MAX);
			return -1;
		}
		a.nscopes = (size_t)k;
	} else {
		for (size_t i = 0;
		     i < sizeof(default_scopes) / sizeof(default_scopes[0]);
		     i++)
			a.scopes[a.nscopes++] = default_scopes[i];
		for (size_t i = 0; cfg != NULL && i < cfg->nrequired_scopes &&
				   a.nscopes < CTL_SCOPES_MAX;
		     i++) {
			int dup = 0;

			for (size_t j = 0; j < a.nscopes; j++)
				dup |= strcmp(a.scopes[j],
					      cfg->required_scopes[i]) == 0;
			if (!dup)
				a.scopes[a.nscopes++] = cfg->required_scopes[i];
		}
	}
	if (ctl_token_claims(&a, claims, claims_cap, NULL, 0, err,
			     sizeof(err)) < 0) {
		fprintf(stderr, "orchctl: %s: %s\n", cmd, err);
		return -1;
	}
	if (strncmp(alg, "HS", 2) == 0) {
		if (m->key_file != NULL) {
			key = keybuf = read_key(cmd, m->key_file, &keylen);
			if (keybuf == NULL)
				return -1;
		} else if (cfg != NULL && cfg->jwt_secret != NULL &&
			   cfg->jwt_secret_len > 0) {
			key = cfg->jwt_secret;
			keylen = cfg->jwt_secret_len;
		} else {
			fprintf(stderr,
				"orchctl: %s: no secret: the config (%s) has "
				"no jwt_secret_file; give --key FILE\n",
				cmd, o->conffile);
			return -1;
		}
	} else {
		if (m->key_file == NULL) {
			fprintf(stderr,
				"orchctl: %s: --alg %s needs --key "
				"PRIVATE_KEY.pem\n",
				cmd, alg);
			return -1;
		}
		key = keybuf = read_key(cmd, m->key_file, &keylen);
		if (keybuf == NULL)
			return -1;
	}
	n = jwt_sign(alg, key, keylen, m->kid, claims, out, cap);
	if (keybuf != NULL) {
		explicit_bzero(keybuf, keylen);
		free(keybuf);
	}
	if (n < 0) {
		fprintf(stderr,
			"orchctl: %s: cannot sign with %s (unknown algorithm, "
			"or a key that does not fit it)\n",
			cmd, alg);
		return -1;
	}
	return 0;
}

int
orchctl_token(int argc, char **argv, const struct orchctl_opts *o)
{
	static const struct option longopts[] = {
	    {"scopes", required_argument, NULL, 's'},
	    {"ttl", required_argument, NULL, 't'},
	    {"jti", required_argument, NULL, 'j'},
	    {"key", required_argument, NULL, 'k'},
	    {"alg", required_argument, NULL, 'a'},
	    {"kid", required_argument, NULL, 'K'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char help[] =
	    "usage: orchctl token -o ORCH [-d DAEMON] [-g ORG] [-w WORKSPACE]\n"
	    "                     [--scopes a,b] [--ttl SECONDS] [--jti ID]\n"
	    "                     [--key FILE --alg RS256|ES256|HS256|HS384|"
	    "HS512 [--kid KID]]\n"
	    "  -o ORCH        the orchestrator (sub, orchestratorId)\n"
	    "  -d DAEMON      the daemon (daemonId; none: any daemon of ORCH)\n"
	    "  -g ORG, -w WS  organizationId, workspaceId claims\n"
	    "  --scopes LIST  default: the five protocol scopes and the "
	    "config's required_scopes\n"
	    "  --ttl SECONDS  default: the config's token_lifetime\n"
	    "  --jti ID       default: a random UUID\n"
	    "  --key FILE     private key PEM (RS256, ES256) or HMAC secret "
	    "(HS*);\n"
	    "                 default: the config's jwt_secret_file, HS256\n";
	struct orchctl_mint m;
	char token[TOKEN_MAX], claims[CLAIMS_MAX];
	int ch;

	memset(&m, 0, sizeof(m));
	while ((ch = getopt_long(argc, argv, "+ho:d:g:w:", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'h':
			printf("%s", help);
			return ORCHCTL_OK;
		case 'o':
			m.orch = optarg;
			break;
		case 'd':
			m.daemon = optarg;
			break;
		case 'g':
			m.org = optarg;
			break;
		case 'w':
			m.workspace = optarg;
			break;
		case 's':
			m.scopes = optarg;
			break;
		case 't':
			if (util_parse_u64(optarg, 1, TTL_MAX, &m.ttl) != 0) {
				fprintf(stderr,
					"orchctl: token: --ttl must be 1..%llu "
					"seconds\n",
					TTL_MAX);
				return ORCHCTL_USAGE;
			}
			break;
		case 'j':
			m.jti = optarg;
			break;
		case 'k':
			m.key_file = optarg;
			break;
		case 'a':
			m.alg = optarg;
			break;
		case 'K':
			m.kid = optarg;
			break;
		default:
			fprintf(stderr, "orchctl: token: see \"orchctl token "
					"-h\"\n");
			return ORCHCTL_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "orchctl: token: unexpected argument \"%s\"\n",
			argv[optind]);
		return ORCHCTL_USAGE;
	}
	if (m.orch == NULL || m.orch[0] == '\0') {
		fprintf(stderr, "orchctl: token: -o ORCH is required\n");
		return ORCHCTL_USAGE;
	}
	if (m.kid != NULL && strpbrk(m.kid, "\"\\") != NULL) {
		fprintf(stderr,
			"orchctl: token: --kid must not hold \" or \\\n");
		return ORCHCTL_USAGE;
	}
	if (orchctl_mint_token(o, "token", &m, token, sizeof(token), claims,
			       sizeof(claims)) != 0)
		return ORCHCTL_FAIL;
	/* A compact JWS and claims from the JSON writer need no escaping. */
	if (o->json)
		printf("{\"token\":\"%s\",\"claims\":%s}\n", token, claims);
	else
		printf("%s\n", token);
	return ORCHCTL_OK;
}
