/*
 * area_data.c — the Kemendagri area list (the CSV files of prelist/data, "idn-area-data",
 * ODbL) embedded in the library's read-only data, so that area lookups need no file at run time.
 *
 * The CSV bytes are pulled in by the assembler (.incbin) from PD_AREA_DATA_DIR, which the top
 * CMakeLists.txt sets to the source tree's prelist/data and lists as this file's dependency.
 * area.c parses them once into an index; nothing else reads these symbols.
 */
#include "area_internal.h"

#ifndef PD_AREA_DATA_DIR
#error "PD_AREA_DATA_DIR must name the folder holding the area CSVs (set by CMakeLists.txt)"
#endif

/* Each file becomes pd_area_csv_<name> .. pd_area_csv_<name>_end, followed by one NUL byte. */
#define PD_INCBIN(name)                                                                       \
    __asm__(".pushsection .rodata\n"                                                          \
            ".balign 16\n"                                                                    \
            ".globl pd_area_csv_" #name "\n"                                                  \
            ".hidden pd_area_csv_" #name "\n"                                                 \
            "pd_area_csv_" #name ":\n"                                                        \
            ".incbin \"" PD_AREA_DATA_DIR "/" #name ".csv\"\n"                                \
            ".globl pd_area_csv_" #name "_end\n"                                              \
            ".hidden pd_area_csv_" #name "_end\n"                                             \
            "pd_area_csv_" #name "_end:\n"                                                    \
            ".byte 0\n"                                                                       \
            ".popsection\n")

PD_INCBIN(provinces);
PD_INCBIN(regencies);
PD_INCBIN(districts);
PD_INCBIN(villages);
