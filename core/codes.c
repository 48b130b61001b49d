/*
 * codes.c — label tables of the categorical fields named in codes.h.
 *
 * The labels follow the PBDT / DTKS questionnaire (Indonesian, as an enumerator reads them). One
 * table per field; pd_codes_of() is the only way in, so validation, the CLI and the prelist
 * generator cannot disagree about which values exist.
 */
#include "codes.h"

#include <string.h>

static const pd_code sex[] = {{1, "laki-laki"}, {2, "perempuan"}};

static const pd_code relationship[] = {{1, "kepala rumah tangga"},
                                       {2, "istri/suami"},
                                       {3, "anak"},
                                       {4, "menantu"},
                                       {5, "cucu"},
                                       {6, "orang tua"},
                                       {7, "mertua"},
                                       {8, "pembantu rumah tangga"},
                                       {9, "lainnya"}};

static const pd_code marital[] = {
    {1, "belum kawin"}, {2, "kawin"}, {3, "cerai hidup"}, {4, "cerai mati"}};

static const pd_code disability[] = {{0, "tidak cacat"},
                                     {1, "tuna daksa/cacat tubuh"},
                                     {2, "tuna netra/buta"},
                                     {3, "tuna rungu"},
                                     {4, "tuna wicara"},
                                     {5, "tuna rungu dan wicara"},
                                     {6, "tuna netra dan cacat tubuh"},
                                     {7, "tuna netra, rungu dan wicara"},
                                     {8, "tuna rungu, wicara dan cacat tubuh"},
                                     {9, "tuna rungu, wicara, netra dan cacat tubuh"},
                                     {10, "cacat mental retardasi"},
                                     {11, "mantan penderita gangguan jiwa"},
                                     {12, "cacat fisik dan mental"}};

static const pd_code chronic_illness[] = {
    {0, "tidak ada"},          {1, "hipertensi"}, {2, "rematik"},      {3, "asma"},
    {4, "masalah jantung"},    {5, "diabetes"},   {6, "tuberkulosis"}, {7, "stroke"},
    {8, "kanker/tumor ganas"}, {9, "lainnya"}};

static const pd_code schooling[] = {{1, "tidak/belum sekolah"},
                                    {2, "SD/sederajat"},
                                    {3, "SMP/sederajat"},
                                    {4, "SMA/SMK/sederajat"},
                                    {5, "D1-D3"},
                                    {6, "D4/S1"},
                                    {7, "S2/S3"}};

static const pd_code work[] = {{1, "tidak bekerja"},
                               {2, "pertanian/peternakan/kehutanan"},
                               {3, "perikanan"},
                               {4, "perdagangan"},
                               {5, "industri pengolahan"},
                               {6, "konstruksi"},
                               {7, "jasa"},
                               {8, "PNS/TNI/Polri"},
                               {9, "lainnya"}};

static const pd_code tenure[] = {
    {1, "milik sendiri"}, {2, "kontrak/sewa"}, {3, "bebas sewa"}, {4, "dinas"}, {5, "lainnya"}};

static const pd_code floor_material[] = {{1, "marmer/granit"},
                                         {2, "keramik"},
                                         {3, "parket/vinil/permadani"},
                                         {4, "ubin/tegel/teraso"},
                                         {5, "kayu/papan kualitas tinggi"},
                                         {6, "semen/bata merah"},
                                         {7, "bambu"},
                                         {8, "kayu/papan kualitas rendah"},
                                         {9, "tanah"},
                                         {10, "lainnya"}};

static const pd_code wall_material[] = {{1, "tembok"},      {2, "plesteran anyaman bambu/kawat"},
                                        {3, "kayu"},        {4, "anyaman bambu"},
                                        {5, "batang kayu"}, {6, "bambu"},
                                        {7, "lainnya"}};

static const pd_code roof_material[] = {{1, "beton/genteng beton"},
                                        {2, "genteng keramik"},
                                        {3, "genteng metal"},
                                        {4, "genteng tanah liat"},
                                        {5, "asbes"},
                                        {6, "seng"},
                                        {7, "sirap"},
                                        {8, "bambu"},
                                        {9, "jerami/ijuk/daun-daunan/rumbia"},
                                        {10, "lainnya"}};

static const pd_code water_source[] = {
    {1, "air kemasan bermerk"},     {2, "air isi ulang"},       {3, "leding meteran"},
    {4, "leding eceran"},           {5, "sumur bor/pompa"},     {6, "sumur terlindung"},
    {7, "sumur tak terlindung"},    {8, "mata air terlindung"}, {9, "mata air tak terlindung"},
    {10, "air sungai/danau/waduk"}, {11, "air hujan"},          {12, "lainnya"}};

static const pd_code lighting[] = {
    {1, "listrik PLN"}, {2, "listrik non-PLN"}, {3, "bukan listrik"}};

static const pd_code cooking_fuel[] = {
    {1, "listrik"},         {2, "gas > 3 kg"},   {3, "gas 3 kg"},
    {4, "gas kota/biogas"}, {5, "minyak tanah"}, {6, "briket"},
    {7, "arang"},           {8, "kayu bakar"},   {9, "tidak memasak di rumah"}};

static const pd_code toilet[] = {{1, "sendiri"}, {2, "bersama"}, {3, "umum"}, {4, "tidak ada"}};

static const pd_code asset_bits[] = {{PD_ASSET_GAS_CYLINDER, "tabung gas 5,5 kg atau lebih"},
                                     {PD_ASSET_FRIDGE, "lemari es"},
                                     {PD_ASSET_AC, "AC"},
                                     {PD_ASSET_WATER_HEATER, "pemanas air"},
                                     {PD_ASSET_TV, "televisi"},
                                     {PD_ASSET_GOLD, "emas/perhiasan 10 gram atau lebih"},
                                     {PD_ASSET_COMPUTER, "komputer/laptop"},
                                     {PD_ASSET_BICYCLE, "sepeda"},
                                     {PD_ASSET_MOTORBIKE, "sepeda motor"},
                                     {PD_ASSET_CAR, "mobil"},
                                     {PD_ASSET_BOAT, "perahu"},
                                     {PD_ASSET_MOTORBOAT, "perahu motor"},
                                     {PD_ASSET_SMARTPHONE, "telepon seluler/smartphone"},
                                     {PD_ASSET_LANDLINE, "telepon rumah"}};

static const pd_code programme_bits[] = {{PD_PROG_PKH, "PKH"},
                                         {PD_PROG_BPNT, "BPNT"},
                                         {PD_PROG_KIS_PBI, "KIS/PBI"},
                                         {PD_PROG_KIP, "KIP"}};

#define SET(name)                                                                                  \
    {                                                                                              \
#name, name, sizeof name / sizeof name[0]                                                  \
    }
static const struct {
    const char *field;
    const pd_code *codes;
    size_t count;
} tables[] = {
    SET(sex),           SET(relationship), SET(marital),  SET(disability),     SET(chronic_illness),
    SET(schooling),     SET(work),         SET(tenure),   SET(floor_material), SET(wall_material),
    SET(roof_material), SET(water_source), SET(lighting), SET(cooking_fuel),   SET(toilet),
};
#undef SET

const pd_code *pd_codes_of(const char *field, size_t *count)
{
    if (count)
        *count = 0;
    if (!field)
        return NULL;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (!strcmp(tables[i].field, field)) {
            if (count)
                *count = tables[i].count;
            return tables[i].codes;
        }
    return NULL;
}

static const char *find(const pd_code *codes, size_t n, int64_t value)
{
    for (size_t i = 0; i < n; i++)
        if (codes[i].value == value)
            return codes[i].label;
    return NULL;
}

const char *pd_code_label(const char *field, int64_t value)
{
    size_t n = 0;
    const pd_code *codes = pd_codes_of(field, &n);
    return codes ? find(codes, n, value) : NULL;
}

bool pd_code_valid(const char *field, int64_t value)
{
    return pd_code_label(field, value) != NULL;
}

const char *pd_code_bit_label(const char *field, int64_t bit)
{
    if (!field)
        return NULL;
    if (!strcmp(field, "asset_flags"))
        return find(asset_bits, sizeof asset_bits / sizeof asset_bits[0], bit);
    if (!strcmp(field, "programmes"))
        return find(programme_bits, sizeof programme_bits / sizeof programme_bits[0], bit);
    return NULL;
}
