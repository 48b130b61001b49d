/*
 * gen_internal.h — inside the prelist generator: the word lists of names.c.
 */
#ifndef PD_GEN_INTERNAL_H
#define PD_GEN_INTERNAL_H

#include <stddef.h>

typedef struct pd_name_list {
    const char *const *v;
    size_t n;
} pd_name_list;

extern const pd_name_list pd_names_jawa_m;
extern const pd_name_list pd_names_jawa_f;
extern const pd_name_list pd_names_modern_m;
extern const pd_name_list pd_names_modern_f;
extern const pd_name_list pd_names_sunda_m;
extern const pd_name_list pd_names_sunda_m2;
extern const pd_name_list pd_names_sunda_f;
extern const pd_name_list pd_names_sunda_f2;
extern const pd_name_list pd_names_batak_m;
extern const pd_name_list pd_names_batak_f;
extern const pd_name_list pd_names_batak_marga;
extern const pd_name_list pd_names_muslim_m;
extern const pd_name_list pd_names_muslim_f;
extern const pd_name_list pd_names_bali_m;
extern const pd_name_list pd_names_bali_f;
extern const pd_name_list pd_names_bali_order_m;
extern const pd_name_list pd_names_bali_order_m2;
extern const pd_name_list pd_names_bali_order_f;
extern const pd_name_list pd_names_bali_order_f2;
extern const pd_name_list pd_names_east_m;
extern const pd_name_list pd_names_east_f;
extern const pd_name_list pd_names_family_ntt;
extern const pd_name_list pd_names_family_sulut;
extern const pd_name_list pd_names_family_maluku;
extern const pd_name_list pd_names_family_papua;
extern const pd_name_list pd_names_street;
extern const pd_name_list pd_names_dusun;
extern const pd_name_list pd_names_gang;

#endif /* PD_GEN_INTERNAL_H */
