/*
 * status_page: the bytes of src/status.html, embedded at build time
 * (status_html.c is generated from it by the Makefile) and served by
 * GET /status.
 */
#ifndef ORCHD_STATUS_PAGE_H
#define ORCHD_STATUS_PAGE_H

#include <stddef.h>

extern const char status_html[];
extern const size_t status_html_len;

#endif
