/* sub: event subscriptions, pure logic. */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/sub.h"
#include "orchd/util.h"

static const struct {
	const char *family; /* with the dot */
	const char *scope;
} family_scopes[] = {
	{"message.", "messages:read"}, {"channel.", "channels:read"},
	{"presence.", "presence:read"}, {"vp.", "vp:status"},
	{"call.", "calls:join"},
};

int
sub_pattern_valid(const char *p)
{
	size_t n = strlen(p);

	if (n == 0 || n > SUB_MAX_LEN)
		return 0;
	if (strcmp(p, "*") == 0)
		return 1;
	if (n >= 3 && strcmp(p + n - 2, ".*") == 0)
		n -= 2; /* "family.*": validate the family */
	if (p[0] == '.' || p[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (!isalnum(c) && c != '_' && c != '.' && c != ':' &&
		    c != '-')
			return 0;
	}
	return 1;
}

int
sub_channel_valid(const char *c)
{
	size_t n = strlen(c);

	if (n == 0 || n > SUB_MAX_LEN)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)c[i]))
			return 0;
	return 1;
}

int
sub_match(const char *pattern, const char *type)
{
	size_t n = strlen(pattern);

	if (strcmp(pattern, "*") == 0)
		return 1;
	if (n >= 2 && strcmp(pattern + n - 2, ".*") == 0)
		/* "message.*" matches "message.x" and "message.x.y". */
		return strncmp(pattern, type, n - 1) == 0 && type[n - 1] != '\0';
	return strcmp(pattern, type) == 0;
}

const char *
sub_scope_for(const char *t)
{
	for (size_t i = 0; i < UTIL_NELEM(family_scopes); i++) {
		size_t fl = strlen(family_scopes[i].family);

		if (strncmp(t, family_scopes[i].family, fl) == 0)
			return family_scopes[i].scope;
	}
	return NULL;
}

const char *
sub_list_next(const struct sub_list *l, const char *prev)
{
	const char *p;

	if (l->n == 0)
		return NULL;
	if (prev == NULL)
		return l->buf;
	p = prev + strlen(prev) + 1;
	return p < l->buf + l->len ? p : NULL;
}

int
sub_list_has(const struct sub_list *l, const char *s)
{
	for (const char *p = sub_list_next(l, NULL); p != NULL;
	     p = sub_list_next(l, p))
		if (strcmp(p, s) == 0)
			return 1;
	return 0;
}

int
sub_list_add(struct sub_list *l, const char *s, unsigned max)
{
	size_t n = strlen(s) + 1;

	if (sub_list_has(l, s))
		return 0;
	if (l->n >= max)
		return -1;
	l->buf = util_realloc(l->buf, l->len + n);
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	l->n++;
	return 0;
}

int
sub_list_remove(struct sub_list *l, const char *s)
{
	for (char *p = l->buf; p != NULL && p < l->buf + l->len;
	     p += strlen(p) + 1) {
		size_t n = strlen(p) + 1;

		if (strcmp(p, s) != 0)
			continue;
		memmove(p, p + n, (size_t)(l->buf + l->len - (p + n)));
		l->len -= n;
		l->n--;
		if (l->n == 0)
			sub_list_clear(l);
		return 1;
	}
	return 0;
}

void
sub_list_clear(struct sub_list *l)
{
	UTIL_FREE(l->buf);
	l->len = 0;
	l->n = 0;
}

int
sub_wants(const struct sub *s, const char *type, const char *channel)
{
	int match = 0;

	for (const char *p = sub_list_next(&s->types, NULL); p != NULL;
	     p = sub_list_next(&s->types, p))
		if ((match = sub_match(p, type)) != 0)
			break;
	if (!match)
		return 0;
	/* Events without a channel pass any channel filter (section 3). */
	if (channel == NULL || *channel == '\0' || s->channels.n == 0)
		return 1;
	return sub_list_has(&s->channels, channel);
}

void
sub_free(struct sub *s)
{
	sub_list_clear(&s->types);
	sub_list_clear(&s->channels);
}
