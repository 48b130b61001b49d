/*
 * json_text.c — JSON text refused before cJSON would cut a string at \u0000 (json_text.h).
 */
#include "json_text.h"

bool pd_json_has_nul_escape(const char *p, size_t n)
{
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_string) {
            in_string = p[i] == '"';
            continue;
        }
        if (p[i] == '"') {
            in_string = false;
        } else if (p[i] == '\\' && i + 1 < n) {
            if (p[i + 1] == 'u' && i + 5 < n && p[i + 2] == '0' && p[i + 3] == '0' &&
                p[i + 4] == '0' && p[i + 5] == '0')
                return true;
            i++; /* the escaped character, whatever it is */
        }
    }
    return false;
}

cJSON *pd_json_parse(const char *p, size_t n)
{
    if (!p || pd_json_has_nul_escape(p, n))
        return NULL;
    return cJSON_ParseWithLength(p, n);
}
