/*
 * validate.h — validation helpers shared inside the core (households, members, visits, photos,
 * op apply). The public validators (pd_validate_nik, _kk, _gps, _date, _text, _code, _area,
 * _jpeg) and the warning codes (PD_WARN_*) are declared in pendata.h.
 *
 * Warning codes stored in visit.warnings (comma separated), from pendata.h:
 *   nik_placeholder        a placeholder NIK (…94 refused, …95 under 17, …96 17+, …99 foreigner)
 *   nik_birth_date         the NIK's date part differs from the member's birth date
 *   nik_duplicate          a NIK of this household is also held by someone in another household
 *   gps_outside_indonesia  the fix is outside Indonesia's rough bounding box
 *   gps_outside_area       the fix is outside the desa's shape (area_shape)
 *   gps_accuracy           accuracy worse than PD_GPS_ACCURACY_WARN_M (50 m)
 *   gps_jump               more than 5 km from another visit made within a minute
 *   gps_mock               the platform flagged the location as mocked
 */
#ifndef PD_VALIDATE_H
#define PD_VALIDATE_H

#include "internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Append a warning (code is a static PD_WARN_* string). w may be NULL. */
void pd_warn_add(pd_warnings *w, const char *code, const char *fmt, ...) PD_PRINTF(3, 4);

/* The codes of w joined by commas, each once, into buf (always NUL-terminated). */
void pd_warnings_join(const pd_warnings *w, char *buf, size_t cap);

/* Put prefix before err's message (no-op for NULL); returns err->code. */
int pd_error_prefix(pd_error *err, const char *prefix);

/* Wall clock, unix milliseconds. */
int64_t pd_now_ms(void);

/* Is s[0..len) valid UTF-8 (shortest forms, no surrogates, at most U+10FFFF)? */
bool pd_utf8_valid(const uint8_t *s, size_t len);

/* Parse "YYYY-MM-DD" strictly into y/m/d; false if malformed or not a real date. */
bool pd_date_parse(const char *ymd, int *y, int *m, int *d);

/* Is (y, m, d) a real date of the Gregorian calendar? */
bool pd_date_real(int y, int m, int d);

/* Days since 1970-01-01 of a date (proleptic Gregorian). */
int64_t pd_days_from_civil(int y, int m, int d);

/* Is (lat, lon) inside a closed ring "lat lon,lat lon,..." (area_shape.shape)? 1 inside,
 * 0 outside, -1 if the shape cannot be parsed (then no warning should be raised). */
int pd_shape_contains(const char *shape, double lat, double lon);

/* Validate a visit outcome, member outcome, photo kind, member end reason: PD_OK or
 * PD_ERR_INVALID naming the allowed values. */
int pd_validate_visit_outcome(const char *outcome, pd_error *err);
int pd_validate_member_outcome(const char *outcome, pd_error *err);
int pd_validate_photo_kind(const char *kind, pd_error *err);
int pd_validate_end_reason(const char *reason, pd_error *err);

#endif /* PD_VALIDATE_H */
