/*
 * json_text.h — checks on JSON text before cJSON parses it, shared by the sync client
 * (client_http.c, client_pull.c) and the server (server/util.c).
 *
 * cJSON decodes the escape \u0000 into a NUL byte and hands strings out NUL-terminated, so a
 * string "Siti\u0000Aminah" reads as "Siti": a value cut short without any error. Neither side
 * has a use for NUL in a string, so text that holds the escape is refused whole, before parsing.
 */
#ifndef PD_JSON_TEXT_H
#define PD_JSON_TEXT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Does a string of the JSON text (n bytes at p) hold the escape \u0000? Outside strings a
 * backslash is invalid JSON anyway (cJSON refuses it). */
bool pd_json_has_nul_escape(const char *p, size_t n);

/* Parse n bytes of JSON text; NULL when it is not JSON or a string holds \u0000 (tell the two
 * apart with pd_json_has_nul_escape). The caller frees with cJSON_Delete. */
cJSON *pd_json_parse(const char *p, size_t n);

#endif
