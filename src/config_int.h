/*
 * config_int.h: what src/config.c (the directive table, the reader and the
 * dump) and src/config_value.c (the value parsers) share.  Not a public API:
 * other modules include orchd/config.h only.
 *
 * The value parsers are pure: text in, value or reason out, no context, no
 * error reporting.  Those that can fail in several ways return NULL on
 * success or why the text is not valid, a constant the caller quotes after
 * the whole text, so the reason needs no formatting.
 */
#ifndef ORCHD_CONFIG_INT_H
#define ORCHD_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "orchd/config.h"

/* Words stored per line by cfgv_tokenize(); more are only counted. */
#define CFGV_MAX_ARGS 32
/* Longest line of a config file (a longer one ends the file's parse). */
#define CFGV_LINE_MAX 65536

#define CFG_MS_SECOND 1000ULL
#define CFG_MS_MINUTE (60 * CFG_MS_SECOND)
#define CFG_MS_HOUR (60 * CFG_MS_MINUTE)
#define CFG_MS_DAY (24 * CFG_MS_HOUR)

#define CFG_KIB 1024ULL
#define CFG_MIB (1024 * CFG_KIB)
#define CFG_GIB (1024 * CFG_MIB)

/* Where the lines come from: a file, or a string when fp is NULL. */
struct cfgv_src {
	FILE *fp;
	const char *text;
};

/*
 * The next line, without its newline, into buf (CFGV_LINE_MAX + 1 bytes).
 * Returns its length, -1 at the end, -2 when it is too long.
 */
ssize_t cfgv_getline(struct cfgv_src *s, char *buf);

/*
 * Split a line into words: blanks separate, '#' outside quotes starts a
 * comment, "..." may hold blanks and '#' (with \" and \\ escapes) and may be
 * glued to unquoted text like in sh.  Words go to buf (at least strlen(line)
 * + 2 bytes), pointers to them to argv[CFGV_MAX_ARGS].  Returns the word
 * count, which can exceed CFGV_MAX_ARGS (the extra words are counted but not
 * stored), or -1 on an unterminated quote.
 */
int cfgv_tokenize(const char *line, char *buf, char **argv);

/* Write v so that cfgv_tokenize() reads it back as one word. */
void cfgv_dump_word(FILE *fp, const char *v);

/* Levenshtein distance, for "did you mean"; long words are never close. */
size_t cfgv_edit_distance(const char *a, const char *b);

/* Strict decimal, digits only: 0 ok, -1 not a number, -2 overflow. */
int cfgv_parse_u64(const char *s, uint64_t *out);

/* In the largest exact unit: 30000 -> "30s", 1500 -> "1500ms", 0 -> "0s". */
void cfgv_fmt_duration(uint64_t ms, char *buf, size_t len);

/* In the largest exact unit: 8192 -> "8k", 1000 -> "1000", 0 -> "0". */
void cfgv_fmt_size(uint64_t n, char *buf, size_t len);

/* A word of an enumeration (on|off, the log levels); lists end with NULL. */
struct enumval {
	const char *name;
	int value;
};

/* The value of word v in e: 0 ok, -1 not one of them. */
int cfgv_find_enum(const struct enumval *e, const char *v, int *out);
/* The word of value in e, NULL if none. */
const char *cfgv_enum_name(const struct enumval *e, int value);
/* The words of e for a message: "error, warn, notice, info or debug". */
void cfgv_enum_list(const struct enumval *e, char *buf, size_t len);

/* "ADDR:PORT" of a listen directive into *out (text set, tls 0). */
const char *cfgv_listen(const char *s, struct config_listen *out);

/* A redis address into *out, whose strings the caller frees. */
const char *cfgv_redis(const char *s, struct config_redis *out);

/*
 * An origin, "scheme://host[:port]" or "*", normalized into out (at least
 * CONFIG_ORIGIN_MAX bytes): scheme and host in lower case, IPv6 in RFC 5952
 * form, no default port (80 for http and ws, 443 for https and wss).
 */
const char *cfgv_origin(const char *s, char *out);

#endif
