/*
 * names.c — the word lists the prelist generator draws on: Indonesian given names by sex and
 * naming tradition, Batak marga, family names of the east (NTT, North Sulawesi, Maluku, Papua),
 * Balinese birth-order names, street and hamlet names.
 *
 * Only lists live here (generate.c decides how to combine them), so that adding names never
 * touches the generator's logic. The lists are made up of common names; they describe no one.
 */
#include "gen_internal.h"

#define LIST(name, ...)                                                                       \
    static const char *const name##_v[] = {__VA_ARGS__};                                      \
    const pd_name_list name = {name##_v, sizeof name##_v / sizeof name##_v[0]}

/* Javanese, the parents' and grandparents' generation: mostly single names. */
LIST(pd_names_jawa_m, "Sutrisno", "Slamet", "Suparman", "Bambang", "Joko", "Sugeng", "Suyanto",
     "Purwanto", "Teguh", "Hartono", "Sumarno", "Paijo", "Tukiman", "Darmaji", "Wagiman",
     "Sukirno", "Suroto", "Mulyono", "Sutarno", "Supriyadi", "Giyanto", "Parjo", "Warsito",
     "Sarjono", "Margono", "Tugiyo", "Karyono", "Sunardi", "Wiyono", "Widodo", "Hadi Susanto",
     "Budi Santoso", "Eko Prasetyo", "Dwi Haryanto", "Edy Susilo", "Heru Wibowo", "Sumadi",
     "Kasno", "Ngadiman", "Rubiyanto", "Suwarno", "Triyono", "Wahyudi", "Yanto", "Supardi",
     "Sutiyono", "Jumadi", "Marsudi", "Daryanto", "Sukardi");
LIST(pd_names_jawa_f, "Sumiati", "Suwarni", "Sri Wahyuni", "Tri Lestari", "Sulastri", "Sukinah",
     "Painem", "Tumini", "Ngatini", "Rukmini", "Endang Susilowati", "Suharti", "Wartini",
     "Jumiati", "Sarmi", "Tukinem", "Mujiati", "Sutini", "Kasiyem", "Ngadiyem", "Parmi",
     "Siti Aminah", "Wahyuningsih", "Lestari", "Sri Rahayu", "Yuliani", "Sumarni", "Puji Astuti",
     "Dwi Handayani", "Supartini", "Sriyatun", "Rumiyati", "Sainem", "Tuginah", "Marsinah",
     "Suprapti", "Sundari", "Sugiyarti", "Katini", "Partinah", "Suyatmi", "Waginah", "Murni",
     "Rusmini", "Sumini", "Endang Sri Lestari", "Tri Wulandari", "Kustiyah", "Paini", "Darmi");

/* The children's generation, all over the country. */
LIST(pd_names_modern_m, "Dimas Aditya", "Rizky Pratama", "Muhammad Rizki", "Fajar Nugroho",
     "Bagus Setiawan", "Aditya Saputra", "Ilham Maulana", "Rafi Ahmad", "Galih Prakoso",
     "Yoga Pratama", "Arif Hidayat", "Dani Kurniawan", "Reza Firmansyah", "Andi Saputra",
     "Bayu Wicaksono", "Aldi Ramadhan", "Farhan Hakim", "Naufal Azzam", "Alif Ramadhan",
     "Rendi Setiawan", "Kevin Saputra", "Fikri Haikal", "Satria Wibowo", "Rangga Putra",
     "Wahyu Hidayat", "Dafa Pratama", "Raka Aditya", "Arya Wirawan", "Gilang Ramadhan",
     "Hafiz Maulana", "Zidan Alfarizi", "Rehan Saputra", "Akbar Maulana", "Bima Sakti",
     "Dwi Cahyo", "Eko Saputro", "Fadli Rahman", "Hendra Gunawan", "Irfan Hakim", "Joni Iskandar",
     "Lutfi Hidayat", "Nanda Pratama", "Rio Saputra", "Syahrul Gunawan", "Taufik Hidayat",
     "Wisnu Aji", "Yusuf Maulana", "Abdul Aziz", "Ahmad Fauzan", "Rafa Alfarizqi");
LIST(pd_names_modern_f, "Putri Ayu Lestari", "Dewi Safitri", "Nur Aini", "Siti Nurhaliza",
     "Anisa Rahmawati", "Rina Marlina", "Fitri Handayani", "Indah Permatasari", "Ayu Wulandari",
     "Dinda Puspita", "Nabila Putri", "Zahra Aulia", "Salsabila", "Aisyah Putri", "Nadia Rahma",
     "Intan Sari", "Mega Utami", "Novi Andriani", "Lia Kurniasih", "Ratna Sari", "Dian Pertiwi",
     "Tiara Anggraini", "Kirana Dewi", "Citra Maharani", "Laila Nur Azizah", "Amelia Putri",
     "Anggun Pratiwi", "Bunga Citra", "Cindy Lestari", "Dela Safitri", "Elsa Oktaviani",
     "Fina Rahmadani", "Hana Khairunnisa", "Ika Wahyuni", "Jihan Aulia", "Keisha Ramadhani",
     "Lutfia Zahra", "Maya Sari", "Nurul Hidayah", "Oktavia Putri", "Puspita Sari",
     "Rahma Wati", "Sekar Ayu", "Tasya Kamila", "Vina Oktaviani", "Wulan Dari", "Yuni Astuti",
     "Zaskia Nur", "Alya Putri", "Syifa Aulia");

/* Sundanese: a given name, often followed by a second name. */
LIST(pd_names_sunda_m, "Asep", "Ujang", "Dede", "Cecep", "Ade", "Dadang", "Enjang", "Yayan",
     "Iwan", "Dadan", "Jajang", "Maman", "Odang", "Endang", "Atang", "Usep", "Wawan", "Aep",
     "Oman", "Tatang", "Encep", "Agus", "Didin", "Engkos", "Ajat", "Ohim", "Komar", "Undang",
     "Dodi", "Eman", "Hendi", "Iyan", "Nandang", "Oding", "Rahmat", "Saepul", "Toto", "Ucup",
     "Yadi", "Yudi");
LIST(pd_names_sunda_m2, "Suryana", "Sopandi", "Hidayat", "Rusmana", "Permana", "Kurniawan",
     "Setiawan", "Saepudin", "Mulyana", "Sudrajat", "Sunarya", "Supriatna", "Kusnadi",
     "Hermawan", "Ruhiyat", "Sutisna", "Gunawan", "Nurdin", "Hendrayana", "Firmansyah",
     "Ruhimat", "Suherman", "Sukmana", "Wijaya", "Rohman");
LIST(pd_names_sunda_f, "Euis", "Neneng", "Imas", "Enok", "Cucu", "Nining", "Yati", "Iis",
     "Eneng", "Popon", "Entin", "Enah", "Iyah", "Onah", "Titin", "Aah", "Ela", "Nani", "Dedeh",
     "Eti", "Ai", "Cicih", "Yeyen", "Mimin", "Kokom", "Lilis", "Tuti", "Cucum", "Dewi", "Empat",
     "Ijah", "Mae", "Neni", "Oom", "Rosita", "Tati", "Unah", "Yoyoh", "Ratna", "Wiwin");
LIST(pd_names_sunda_f2, "Nurhayati", "Rohaeti", "Suryani", "Rosmiati", "Kurniasih", "Hartini",
     "Sumiati", "Rahmawati", "Komariah", "Sopiah", "Jubaedah", "Maryati", "Rukmini", "Haryati",
     "Kartika", "Lestari", "Mulyani", "Nurjanah", "Rosmini", "Sukaesih");

/* Batak: given names (Christian and traditional) and marga. */
LIST(pd_names_batak_m, "Maruli", "Poltak", "Togar", "Hotman", "Binsar", "Parlindungan",
     "Jhonson", "Robert", "Daniel", "Hendra", "Rudi", "Bonar", "Tigor", "Halomoan", "Sahat",
     "Manahan", "Jonggi", "Parulian", "Marihot", "Ronald", "Saut", "Pardamean", "Tumpal",
     "Maruba", "Benny", "Darwin", "Edison", "Frans", "Gomgom", "Hasudungan", "Janter", "Lamhot",
     "Martua", "Nelson", "Rinaldi", "Samuel", "Torang", "Washington");
LIST(pd_names_batak_f, "Rosmawati", "Tiurma", "Lasma", "Sondang", "Rugun", "Dame", "Hotmaida",
     "Nurhayati", "Melati", "Rina", "Maria", "Tiominar", "Rotua", "Lamria", "Romauli", "Hotnida",
     "Nursanti", "Erlina", "Sarma", "Rosdiana", "Mariani", "Tiarma", "Butet", "Debora", "Ester",
     "Friska", "Herlina", "Intan", "Juliana", "Lenny", "Marlina", "Nova", "Rosinta", "Santi",
     "Tetty", "Yosephine");
LIST(pd_names_batak_marga, "Simanjuntak", "Siregar", "Nasution", "Lubis", "Harahap", "Sinaga",
     "Situmorang", "Sitompul", "Hutagalung", "Pasaribu", "Tampubolon", "Sihombing", "Panjaitan",
     "Manurung", "Simatupang", "Sitorus", "Silalahi", "Nainggolan", "Hutapea", "Damanik",
     "Saragih", "Purba", "Ginting", "Tarigan", "Sembiring", "Sitepu", "Hasibuan", "Pane",
     "Simbolon", "Sianturi", "Napitupulu", "Marpaung", "Siahaan", "Aritonang", "Pardede",
     "Sibarani", "Hutabarat", "Gultom", "Sihotang", "Tambunan");

/* Muslim names of Aceh, the Malay world, Kalimantan, Sulawesi, Madura, NTB. */
LIST(pd_names_muslim_m, "Muhammad", "Ahmad", "Abdul Rahman", "Zulkifli", "Fauzi", "Ridwan",
     "Syahrul", "Hasan", "Husain", "Ismail", "Ibrahim", "Yusuf", "Sulaiman", "Iskandar",
     "Abdullah", "Usman", "Hamzah", "Idris", "Jamaluddin", "Nasruddin", "Saiful", "Mukhlis",
     "Azhari", "Darwis", "Rusli", "Marzuki", "Syamsul", "Anwar", "Khairul", "Ramli", "Zainal",
     "Amiruddin", "Basri", "Mahmud", "Haris", "Arsyad", "Baharuddin", "Hamdani", "Junaidi",
     "Kamaruddin", "Lukman", "Mansur", "Nurdin", "Rahmat", "Salim", "Syafruddin", "Taufik",
     "Umar", "Yunus", "Zakaria");
LIST(pd_names_muslim_f, "Siti", "Nurul", "Aisyah", "Fatimah", "Khadijah", "Zahra", "Rahmah",
     "Nur Aini", "Halimah", "Maryam", "Zainab", "Rohani", "Salmah", "Hafsah", "Asma",
     "Nurhayati", "Rosnah", "Hasnah", "Faridah", "Jamilah", "Mariam", "Rukiah", "Safiah",
     "Zubaidah", "Nuraini", "Aminah", "Hamidah", "Rabiah", "Siti Aisyah", "Siti Fatimah",
     "Nurjannah", "Hajrah", "Kartini", "Mardiana", "Nurbaya", "Radiah", "Saodah", "Wahidah",
     "Yusnidar", "Zuraidah");

/* Bali: the name after the birth-order name (I Wayan …, Ni Made …). */
LIST(pd_names_bali_m, "Sudarsana", "Suarta", "Sukadana", "Artawan", "Budiasa", "Mertayasa",
     "Suardana", "Wirawan", "Darmawan", "Astawa", "Sutama", "Arsana", "Sudiarta", "Widiana",
     "Kariasa", "Adnyana", "Suwirta", "Ardana", "Gunarta", "Juliana", "Merta", "Parwata",
     "Rai Sudarma", "Sandiyasa", "Sukerta", "Wardana", "Yasa", "Sumerta");
LIST(pd_names_bali_f, "Sriyani", "Sukerni", "Suartini", "Ariani", "Wartini", "Sumiarti",
     "Kartini", "Widiastuti", "Astiti", "Suciani", "Rusmini", "Parwati", "Sudiani", "Darmini",
     "Ayu Lestari", "Candra Dewi", "Eka Yanti", "Juliantari", "Kusumawati", "Mariani",
     "Nopiani", "Purnami", "Rai Wahyuni", "Sri Utami", "Sukarmi", "Wiratni");
LIST(pd_names_bali_order_m, "Wayan", "Made", "Nyoman", "Ketut");
LIST(pd_names_bali_order_m2, "Putu", "Kadek", "Komang", "Ketut");
LIST(pd_names_bali_order_f, "Wayan", "Made", "Nyoman", "Ketut");
LIST(pd_names_bali_order_f2, "Luh", "Kadek", "Komang", "Ketut");

/* The east: Christian given names, and family names by region. */
LIST(pd_names_east_m, "Yohanes", "Petrus", "Markus", "Agustinus", "Fransiskus", "Yosef",
     "Paulus", "Stefanus", "Yakobus", "Mikael", "Hendrik", "Frans", "Alexander", "Antonius",
     "Benediktus", "Dominikus", "Gabriel", "Kornelis", "Lukas", "Matius", "Simon", "Thomas",
     "Yulius", "Samuel", "Yonas", "Aloysius", "Bonifasius", "Efraim", "Herman", "Isak",
     "Melkianus", "Nikolaus", "Oktovianus", "Sefnat", "Viktor", "Zakarias");
LIST(pd_names_east_f, "Maria", "Yuliana", "Agustina", "Elisabeth", "Katarina", "Magdalena",
     "Margaretha", "Theresia", "Veronika", "Yohana", "Anastasia", "Bernadeta", "Ester",
     "Florentina", "Helena", "Lusia", "Martha", "Paulina", "Regina", "Sisilia", "Yosefina",
     "Debora", "Rut", "Adriana", "Dorkas", "Fransiska", "Imelda", "Kristina", "Mariana",
     "Novita", "Oktovina", "Selvi", "Welmina", "Yuli");
LIST(pd_names_family_ntt, "Bria", "Seran", "Nahak", "Kase", "Tefa", "Lake", "Nenobais", "Manek",
     "Leki", "Taek", "Bere", "Mau", "Riwu Kaho", "Lado", "Ndun", "Pello", "Fanggidae", "Bani",
     "Dethan", "Lay", "Nope", "Sabu", "Tallo", "Ulu");
LIST(pd_names_family_sulut, "Rumengan", "Lumenta", "Wowor", "Mandagi", "Sumampouw", "Tumbelaka",
     "Kaunang", "Pangemanan", "Rondonuwu", "Sondakh", "Wenas", "Lengkong", "Tambuwun", "Karundeng",
     "Lumintang", "Mamahit", "Ratulangi", "Supit", "Tangkilisan", "Walangitan");
LIST(pd_names_family_maluku, "Pattiasina", "Latuconsina", "Tuhumury", "Sahetapy", "Pattinama",
     "Pelupessy", "Matulessy", "Leiwakabessy", "Sopacua", "Tanamal", "Wattimena", "Latumahina",
     "Lekatompessy", "Nanlohy", "Pattikawa", "Rehatta", "Siahaya", "Tuasikal", "Ohorella",
     "Marasabessy");
LIST(pd_names_family_papua, "Wenda", "Kogoya", "Tabuni", "Wonda", "Rumbiak", "Mandowen", "Kambu",
     "Yikwa", "Murib", "Wanimbo", "Rumbewas", "Mayor", "Kaisiepo", "Wamafma", "Ayomi", "Fonataba",
     "Karubaba", "Msen", "Sawaki", "Waromi", "Yoku", "Youw");

/* Places. */
LIST(pd_names_street, "Merdeka", "Sudirman", "Diponegoro", "Ahmad Yani", "Gajah Mada", "Pahlawan",
     "Veteran", "Melati", "Mawar", "Kenanga", "Flamboyan", "Cempaka", "Anggrek", "Sukajadi",
     "Pramuka", "Hasanuddin", "Imam Bonjol", "Kartini", "Pattimura", "Teuku Umar",
     "Cut Nyak Dien", "Gatot Subroto", "Hayam Wuruk", "Mangga", "Rambutan", "Nangka", "Kelapa",
     "Bhayangkara", "Kamboja", "Dahlia", "Sisingamangaraja", "Sam Ratulangi", "Dr. Sutomo",
     "KH. Ahmad Dahlan", "Sultan Agung", "Pemuda", "Proklamasi", "Cendrawasih", "Rajawali",
     "Perintis Kemerdekaan");
LIST(pd_names_dusun, "Krajan", "Karanganyar", "Sukamaju", "Sidomulyo", "Tegalrejo", "Kebonsari",
     "Sumbersari", "Margomulyo", "Sukaraja", "Cikaret", "Babakan", "Cibeureum", "Lebak", "Pasir",
     "Kampung Baru", "Sungai Limau", "Lubuk", "Tanjung", "Sidorejo", "Mekarsari", "Sukamulya",
     "Purwodadi", "Wonorejo", "Banjarsari", "Ngasem", "Gunungsari", "Tanah Merah", "Pematang",
     "Simpang Tiga", "Padang", "Talang", "Pulau", "Bukit", "Lembah", "Kebun Jeruk", "Rawa",
     "Mulyorejo", "Jatisari", "Cijambu", "Kaliwungu");
LIST(pd_names_gang, "Masjid", "Mushola", "Sekolah", "Pasar", "Makam", "Sawah", "Kali", "Buntu",
     "Damai", "Rukun", "Sejahtera", "Harapan");
