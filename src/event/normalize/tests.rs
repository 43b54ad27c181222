use super::*;
use UserField::*;

/// What a value should become: `Ok(Some(normalized))`, `Ok(None)` (dropped) or
/// `Err(reason)`.
type Expect = Result<Option<&'static str>, &'static str>;

fn check(field: UserField, input: &str, expected: Expect) {
    let mut scratch = String::new();
    let got = normalize(field, input, &mut scratch)
        .map(|v| v.map(str::to_owned))
        .map_err(|e| e.reason());
    let want = expected.map(|v| v.map(str::to_owned));
    assert_eq!(got, want, "{} {input:?}", field.key());
    // `hash` must agree with `normalize` on everything that is not already a digest.
    let hashed = hash(field, input, &mut scratch);
    match (&got, hashed) {
        (Ok(Some(norm)), Ok(Some(h))) => {
            assert!(!h.is_passthrough(), "{} {input:?}", field.key());
            assert_eq!(h.as_bytes_for_test(), sha256_hex(norm.as_bytes()));
        }
        (Ok(None), Ok(None)) => {}
        (Err(reason), Err(e)) => assert_eq!(*reason, e.reason()),
        (got, hashed) => panic!(
            "{} {input:?}: normalize {got:?}, hash {hashed:?}",
            field.key()
        ),
    }
}

impl Hashed {
    fn as_bytes_for_test(&self) -> [u8; 64] {
        let mut out = [0; 64];
        out.copy_from_slice(self.digest_hex().as_bytes());
        out
    }
}

const fn n(s: &'static str) -> Expect {
    Ok(Some(s))
}
const NONE: Expect = Ok(None);
const fn err(reason: &'static str) -> Expect {
    Err(reason)
}

#[test]
fn rules_table() {
    let cases: &[(UserField, &str, Expect)] = &[
        // all fields: trimming and blanks
        (Em, "", NONE),
        (Em, "   \t\r\n ", NONE),
        (Ph, "\u{FEFF} \u{0} ", NONE),
        (Db, " ", NONE),
        (Ge, "\n", NONE),
        (Country, "\t", NONE),
        (ExternalId, "  ", NONE),
        // em
        (Em, "John_Smith@gmail.com", n("john_smith@gmail.com")),
        (Em, "  JOHN@Example.COM \n", n("john@example.com")),
        (Em, "\u{FEFF}a@b.co", n("a@b.co")),
        (
            Em,
            "a.b+tag@sub.example.co.uk",
            n("a.b+tag@sub.example.co.uk"),
        ),
        (Em, "ÜSER@bücher.de", n("üser@bücher.de")),
        (Em, "john", err("invalid_em")),
        (Em, "@example.com", err("invalid_em")),
        (Em, "john@", err("invalid_em")),
        (Em, "john@localhost", err("invalid_em")),
        (Em, "john@@example.com", err("invalid_em")),
        (Em, "a@b@example.com", err("invalid_em")),
        (Em, "john@example..com", err("invalid_em")),
        (Em, "john@.example.com", err("invalid_em")),
        (Em, "john@example.com.", err("invalid_em")),
        (Em, "john smith@example.com", err("invalid_em")),
        (Em, "john\u{200B}@example.com", err("invalid_em")),
        (Em, "john@exa\u{202E}mple.com", err("invalid_em")),
        (Em, "john\u{7}@example.com", err("invalid_em")),
        (Em, "5f4dcc3b5aa765d61d8327deb882cf99", err("invalid_em")), // MD5: not passed through
        // ph
        (Ph, "(650)555-1212", n("16505551212")),
        (Ph, "(650) 555-1212", n("16505551212")),
        (Ph, "(650) 555 1212", n("16505551212")),
        (Ph, "650-555-1212", n("16505551212")),
        (Ph, "650.555.1212", n("16505551212")),
        (Ph, "650 555 1212", n("16505551212")),
        (Ph, "1 (650) 555-1212", n("16505551212")),
        (Ph, "+1 650 555 1212", n("16505551212")),
        (Ph, "+1-650-555-1212", n("16505551212")),
        (Ph, "001 650 555 1212", n("16505551212")),
        (Ph, "6505551212", n("6505551212")), // bare ten digits: no calling code guessed
        (Ph, "650-555.1212", n("6505551212")), // mixed separators: not the NA layout
        (Ph, "(150) 555-1212", n("1505551212")), // N must be 2..9
        (Ph, "650-155-1212", n("6501551212")),
        (Ph, "+44 20 7946 0958", n("442079460958")),
        (Ph, "+44 (0)20 7946 0958", n("442079460958")),
        (Ph, "0044 20 7946 0958", n("442079460958")),
        (Ph, "+49 (30) 1234567", n("49301234567")),
        (Ph, "+33 6 12 34 56 78", n("33612345678")),
        (Ph, "tel: +1 (650) 555-1212", n("16505551212")),
        (Ph, "+٩٧١ ٥٠ ١٢٣ ٤٥٦٧", n("971501234567")),
        (Ph, "+۹۸ ۹۱۲ ۳۴۵ ۶۷۸۹", n("989123456789")),
        (Ph, "＋８１ ９０ １２３４ ５６７８", n("819012345678")),
        (Ph, "n/a", NONE),
        (Ph, "+", NONE),
        (Ph, "000", err("invalid_ph")),
        (Ph, "12345", err("invalid_ph")),
        (Ph, "1-800-FLOWERS", err("invalid_ph")),
        (Ph, "1234567890123456", err("invalid_ph")),
        (Ph, "1234567", n("1234567")),
        (Ph, "123456789012345", n("123456789012345")),
        // fn, ln
        (Fn, "Mary", n("mary")),
        (Fn, "  MARY  ", n("mary")),
        (Fn, "Valéry", n("valéry")),
        (Fn, "Vale\u{301}ry", n("valéry")), // decomposed accent composes (NFC)
        (Fn, "정", n("정")),
        (Fn, "\u{110C}\u{1165}\u{11BC}", n("정")), // conjoining jamo compose (NFC)
        (Fn, "Mary-Ann", n("maryann")),
        (Fn, "Mary Ann", n("maryann")),
        (Ln, "O'Brien", n("obrien")),
        (Ln, "Smith Jr.", n("smithjr")),
        (Ln, "ÆSØP", n("æsøp")),
        (Ln, "Müller2", n("müller")),
        (Ln, "ΣΩΚΡΆΤΗΣ", n("σωκράτησ")), // char-wise lowercase, no final-sigma context
        (Fn, "Дмитрий", n("дмитрий")),
        (Fn, "محمد", n("محمد")),
        (Fn, "李", n("李")),
        (Fn, "अमित", n("अमित")),
        (Fn, "123", NONE),
        (Fn, "😀", NONE),
        (Fn, "Ann😀", n("ann")),
        (Fn, "\u{301}", NONE),
        (Fn, "\u{301}\u{308}\u{301}", NONE),
        (Fn, "1\u{301}a", n("a")),
        (Fn, "\u{202E}Eve\u{202C}", n("eve")),
        (Fn, "\u{200F}שרה", n("שרה")),
        (Ln, "5f4dcc3b5aa765d61d8327deb882cf99", n("fdccbaadddebcf")),
        // ct
        (Ct, "New York", n("newyork")),
        (Ct, "Saint-Étienne", n("saintétienne")),
        (Ct, "St. Louis", n("stlouis")),
        (Ct, "München", n("münchen")),
        (Ct, "東京", n("東京")),
        (Ct, "Winston-Salem 27101", n("winstonsalem")),
        (Ct, "...", NONE),
        // st
        (St, "California", n("ca")),
        (St, "CA", n("ca")),
        (St, "ca", n("ca")),
        (St, "New York", n("ny")),
        (St, "new-york", n("ny")),
        (St, "District of Columbia", n("dc")),
        (St, "Washington, D.C.", n("dc")),
        (St, "Washington", n("wa")),
        (St, "Puerto Rico", n("pr")),
        (St, "U.S. Virgin Islands", n("vi")),
        (St, "Guam", n("gu")),
        (St, "Armed Forces Europe", n("ae")),
        (St, "Québec", n("qc")),
        (St, "Quebec", n("qc")),
        (St, "British Columbia", n("bc")),
        (St, "Nouvelle-Écosse", n("ns")),
        (St, "Newfoundland and Labrador", n("nl")),
        (St, "Prince Edward Island", n("pe")),
        (St, "Bavaria", n("bavaria")),
        (St, "Île-de-France", n("îledefrance")),
        (St, "東京都", n("東京都")),
        (St, "NSW", n("nsw")),
        (St, "--", NONE),
        // zp
        (Zp, "94025", n("94025")),
        (Zp, "94025-1234", n("94025")),
        (Zp, "94025 1234", n("94025")),
        (Zp, "940251234", n("94025")),
        (Zp, " 02134 ", n("02134")),
        (Zp, "M1 1AE", n("m11ae")),
        (Zp, "SW1A 1AA", n("sw1a1aa")),
        (Zp, "K1A 0B1", n("k1a0b1")),
        (Zp, "01310-100", n("01310100")),
        (Zp, "100-0001", n("1000001")),
        (Zp, "9402-51234", n("940251234")),
        (Zp, "7", err("invalid_zp")),
        (Zp, "-", NONE),
        // country
        (Country, "United States", n("us")),
        (Country, "US", n("us")),
        (Country, "us", n("us")),
        (Country, "USA", n("us")),
        (Country, "U.S.A.", n("us")),
        (Country, "U.S.", n("us")),
        (Country, "United States of America", n("us")),
        (Country, "united-states", n("us")),
        (Country, "UK", n("gb")),
        (Country, "GB", n("gb")),
        (Country, "GBR", n("gb")),
        (Country, "Great Britain", n("gb")),
        (Country, "England", n("gb")),
        (Country, "United Kingdom", n("gb")),
        (Country, "Germany", n("de")),
        (Country, "DEU", n("de")),
        (Country, "Deutschland", n("de")),
        (Country, "The Netherlands", n("nl")),
        (Country, "Holland", n("nl")),
        (Country, "Côte d'Ivoire", n("ci")),
        (Country, "Cote d'Ivoire", n("ci")),
        (Country, "Ivory Coast", n("ci")),
        (Country, "South Korea", n("kr")),
        (Country, "Korea, Republic of", n("kr")),
        (Country, "North Korea", n("kp")),
        (Country, "Viet Nam", n("vn")),
        (Country, "Vietnam", n("vn")),
        (Country, "Russia", n("ru")),
        (Country, "Türkiye", n("tr")),
        (Country, "Turkey", n("tr")),
        (Country, "Åland Islands", n("ax")),
        (Country, "St. Lucia", n("lc")),
        (Country, "St Kitts and Nevis", n("kn")),
        (Country, "Bosnia & Herzegovina", n("ba")),
        (Country, "Congo", n("cg")),
        (Country, "DR Congo", n("cd")),
        (Country, "Micronesia, Federated States of", n("fm")),
        (Country, "Holy See (Vatican City State)", n("va")),
        (Country, "Bolivia", n("bo")),
        (Country, "XK", err("invalid_country")),
        (Country, "ZZ", err("invalid_country")),
        (Country, "Atlantis", err("invalid_country")),
        (Country, "...", err("invalid_country")),
        (Country, "中国", err("invalid_country")),
        // db
        (Db, "2/16/1997", n("19970216")),
        (Db, "02/16/1997", n("19970216")),
        (Db, "02-16-1997", n("19970216")),
        (Db, "19970216", n("19970216")),
        (Db, "1997-02-16", n("19970216")),
        (Db, "1997/2/16", n("19970216")),
        (Db, "1997.02.16", n("19970216")),
        (Db, "16.02.1997", n("19970216")),
        (Db, "3.4.1997", n("19970403")),
        (Db, "16/2/1997", n("19970216")),
        (Db, "4/3/1997", n("19970403")),
        (Db, "16 Feb 1997", n("19970216")),
        (Db, "16-FEB-1997", n("19970216")),
        (Db, "February 16, 1997", n("19970216")),
        (Db, "February 16th, 1997", n("19970216")),
        (Db, "Sept 1 1997", n("19970901")),
        (Db, "1997-Feb-16", n("19970216")),
        (Db, "29.02.2000", n("20000229")),
        (Db, "2004-02-29", n("20040229")),
        (Db, "1900-01-01", n("19000101")),
        (Db, "2100-12-31", n("21001231")),
        (Db, "1900-02-29", err("invalid_db")),
        (Db, "1997-02-29", err("invalid_db")),
        (Db, "1997-02-30", err("invalid_db")),
        (Db, "1997-04-31", err("invalid_db")),
        (Db, "1997-13-01", err("invalid_db")),
        (Db, "1997-00-10", err("invalid_db")),
        (Db, "1997-01-00", err("invalid_db")),
        (Db, "13/13/1997", err("invalid_db")),
        (Db, "02.16.1997", err("invalid_db")),
        (Db, "1899-12-31", err("invalid_db")),
        (Db, "2101-01-01", err("invalid_db")),
        (Db, "16/02/97", err("invalid_db")),
        (Db, "1997-02/16", err("invalid_db")),
        (Db, "1997-02-16T00:00:00Z", err("invalid_db")),
        (Db, "1997", err("invalid_db")),
        (Db, "Feb 1997", err("invalid_db")),
        (Db, "16 Feb Mar 1997", err("invalid_db")),
        (Db, "16 Febr 1997", err("invalid_db")),
        (Db, "yesterday", err("invalid_db")),
        (Db, "１９９７-02-16", err("invalid_db")),
        (Db, "999999999999", err("invalid_db")),
        // ge
        (Ge, "f", n("f")),
        (Ge, "F", n("f")),
        (Ge, "m", n("m")),
        (Ge, "Female", n("f")),
        (Ge, " WOMAN ", n("f")),
        (Ge, "Mrs.", n("f")),
        (Ge, "Ms", n("f")),
        (Ge, "Frau", n("f")),
        (Ge, "weiblich", n("f")),
        (Ge, "w", n("f")),
        (Ge, "Femme", n("f")),
        (Ge, "Féminin", n("f")),
        (Ge, "mujer", n("f")),
        (Ge, "Señora", n("f")),
        (Ge, "женский", n("f")),
        (Ge, "女", n("f")),
        (Ge, "여성", n("f")),
        (Ge, "Male", n("m")),
        (Ge, "MAN", n("m")),
        (Ge, "Mr.", n("m")),
        (Ge, "Herr", n("m")),
        (Ge, "männlich", n("m")),
        (Ge, "Homme", n("m")),
        (Ge, "hombre", n("m")),
        (Ge, "Masculino", n("m")),
        (Ge, "Мужской", n("m")),
        (Ge, "男性", n("m")),
        (Ge, "남", n("m")),
        (Ge, "x", err("invalid_ge")),
        (Ge, "other", err("invalid_ge")),
        (Ge, "non-binary", err("invalid_ge")),
        (Ge, "?", err("invalid_ge")),
        // external_id
        (ExternalId, " User-123 ", n("user-123")),
        (ExternalId, "ABC def", n("abc def")),
        (ExternalId, "ÉLODIE#42", n("élodie#42")),
        (
            ExternalId,
            "5F4DCC3B5AA765D61D8327DEB882CF99",
            n("5f4dcc3b5aa765d61d8327deb882cf99"),
        ),
    ];
    for &(field, input, expected) in cases {
        check(field, input, expected);
    }
    // Every field appears in the table.
    for field in UserField::ALL {
        assert!(cases.iter().any(|c| c.0 == field), "{}", field.key());
    }
}

#[test]
fn official_vectors() {
    let vectors: &[(UserField, &str, &str, &str)] = &[
        (
            Em,
            "John_Smith@gmail.com",
            "john_smith@gmail.com",
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
        ),
        (
            Ph,
            "(650)555-1212",
            "16505551212",
            "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
        ),
        (
            Fn,
            "Mary",
            "mary",
            "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec",
        ),
        (
            Fn,
            "Valéry",
            "valéry",
            "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c",
        ),
        (
            Ln,
            "정",
            "정",
            "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14",
        ),
        (
            Db,
            "2/16/1997",
            "19970216",
            "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c",
        ),
        (
            Country,
            "United States",
            "us",
            "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621",
        ),
    ];
    let mut scratch = String::new();
    for &(field, input, normalized, digest) in vectors {
        check(field, input, n(normalized));
        let h = hash(field, input, &mut scratch).unwrap().unwrap();
        assert_eq!(h.as_str(), digest, "{input:?}");
        assert!(!h.is_passthrough());
        assert!(is_hashed_value(h.as_str()));
        // Hashing the official digest again passes it through unchanged.
        let again = hash(field, digest, &mut scratch).unwrap().unwrap();
        assert_eq!(again.as_str(), digest);
        assert!(again.is_passthrough());
    }
}

#[test]
fn passthrough() {
    const LOWER: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";
    const UPPER: &str = "62A14E44F765419D10FEA99367361A727C12365E2520F32218D505ED9AA0F62F";
    let mut scratch = String::new();
    let cases: &[(&str, Option<&str>)] = &[
        (LOWER, Some(LOWER)),
        (UPPER, Some(LOWER)),
        (
            "  62A14E44F765419D10FEA99367361A727C12365E2520F32218D505ED9AA0F62F\n",
            Some(LOWER),
        ),
        (
            "62A14E44F765419D10FEA99367361A727C12365E2520F32218D505ED9AA0F62F.AQYBAAAA",
            Some("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f.AQYBAAAA"),
        ),
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f.a_B-9",
            Some("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f.a_B-9"),
        ),
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f.ABCDEFGHIJKLMNOP",
            Some(
                "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f.ABCDEFGHIJKLMNOP",
            ),
        ),
        // Not a digest: normalized and hashed like any value.
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f.",
            None,
        ),
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f.ABCDEFGHIJKLMNOPQ",
            None,
        ),
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f.AB=",
            None,
        ),
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62",
            None,
        ),
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f0",
            None,
        ),
        (
            "g2a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
            None,
        ),
        ("5f4dcc3b5aa765d61d8327deb882cf99", None),
    ];
    for &(input, expected) in cases {
        let h = hash(ExternalId, input, &mut scratch).unwrap().unwrap();
        match expected {
            Some(out) => {
                assert!(h.is_passthrough(), "{input:?}");
                assert_eq!(h.as_str(), out);
                assert_eq!(h.digest_hex(), LOWER);
                assert_eq!(h.appendix(), out.get(65..));
            }
            None => {
                assert!(!h.is_passthrough(), "{input:?}");
                assert_eq!(h.as_str().len(), 64);
                assert_eq!(h.appendix(), None);
                let expected = sha256_hex(input.trim().to_lowercase().as_bytes());
                assert_eq!(h.as_str().as_bytes(), expected);
            }
        }
        assert!(is_hashed_value(h.as_str()));
    }
    // Passthrough works for every field, even those whose rules would refuse the value.
    for field in UserField::ALL {
        let h = hash(field, UPPER, &mut scratch).unwrap().unwrap();
        assert_eq!(h.as_str(), LOWER, "{}", field.key());
    }
    let h = hash(Em, UPPER, &mut scratch).unwrap().unwrap();
    assert!(format!("{h:?}").contains(LOWER));
}

#[test]
fn hashed_values() {
    let cases: &[(&str, bool)] = &[
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
            true,
        ),
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f.AQYBAAAA",
            true,
        ),
        (
            "62A14E44F765419D10FEA99367361A727C12365E2520F32218D505ED9AA0F62F",
            false,
        ),
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f.",
            false,
        ),
        (
            " 62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
            false,
        ),
        (
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62",
            false,
        ),
        ("5f4dcc3b5aa765d61d8327deb882cf99", false),
        ("john@example.com", false),
        ("", false),
    ];
    for &(value, expected) in cases {
        assert_eq!(is_hashed_value(value), expected, "{value:?}");
    }
    assert_eq!(
        &sha256_hex(b""),
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn hostile_inputs() {
    let long_name = "a".repeat(MAX_VALUE_LEN);
    let too_long = "a".repeat(MAX_VALUE_LEN + 1);
    let padded = format!("{}{long_name}{}", " ".repeat(10_000), "\n".repeat(10_000));
    let mut scratch = String::new();
    assert_eq!(
        normalize(Fn, &long_name, &mut scratch),
        Ok(Some(&*long_name))
    );
    assert_eq!(normalize(Fn, &padded, &mut scratch), Ok(Some(&*long_name)));
    check(ExternalId, &" ".repeat(1 << 20), NONE);
    for field in UserField::ALL {
        check(field, &too_long, err("too_long"));
        let mut scratch = String::from("leftover");
        let e = normalize(field, &too_long, &mut scratch).unwrap_err();
        assert_eq!(
            e,
            NormalizeError::TooLong {
                field,
                len: MAX_VALUE_LEN + 1
            }
        );
        assert_eq!(e.field(), field);
        assert!(scratch.is_empty());
    }
    // Multi-byte characters count in bytes.
    let accents = "é".repeat(MAX_VALUE_LEN / 2);
    assert_eq!(normalize(Fn, &accents, &mut scratch), Ok(Some(&*accents)));
    check(Fn, &"é".repeat(MAX_VALUE_LEN / 2 + 1), err("too_long"));

    let nasty: Vec<String> = vec![
        "\u{0}\u{1}\u{7f}\u{9f}".into(),
        "a\u{0}b".into(),
        "😀👩‍👩‍👧‍👦🏳️‍🌈".into(),
        "\u{202E}moc.elpmaxe@nhoj\u{202C}".into(),
        "مرحبا بالعالم".into(),
        "\u{301}".repeat(200),
        "a".to_string() + &"\u{301}".repeat(250),
        "\u{0345}\u{0301}\u{0308}".repeat(40),
        "\u{1100}\u{1161}\u{11A8}".repeat(50),
        "ﷺ".repeat(100),
        "ǅǈǋ".into(),
        "İSTANBUL".into(),
        "ß".repeat(100),
        "\u{FFFF}\u{10FFFF}\u{E000}".into(),
        "(((((((((".into(),
        "(0)(0)(0)".into(),
        "+(0)".into(),
        "1st 2nd 3rd".into(),
        "99999999/99999999/99999999".into(),
        "--..//,,".into(),
        "@".repeat(300),
        ".".repeat(300),
        "9".repeat(512),
        "0".repeat(512),
        "A".repeat(300) + "@" + &"b.".repeat(100) + "c",
    ];
    for value in &nasty {
        for field in UserField::ALL {
            if let Ok(Some(v)) = normalize(field, value, &mut scratch) {
                assert!(!v.is_empty());
            }
            if let Ok(Some(h)) = hash(field, value, &mut scratch) {
                assert!(is_hashed_value(h.as_str()));
            }
        }
    }
    check(Fn, "İSTANBUL", n("i\u{307}stanbul"));
    check(Fn, "a\u{301}\u{301}", n("á\u{301}"));
    check(Ph, &"9".repeat(512), err("invalid_ph"));
    check(Ph, &"0".repeat(512), err("invalid_ph"));
}

#[test]
fn errors_never_contain_the_value() {
    let cases: &[(UserField, &str)] = &[
        (Em, "secret.person@nowhere"),
        (Ph, "secret 12345"),
        (Db, "secret 1997"),
        (Ge, "secretgender"),
        (Country, "Secretland"),
        (Zp, "s"),
        (Fn, &"secretname".repeat(60)),
    ];
    let mut scratch = String::new();
    for &(field, value) in cases {
        let e = normalize(field, value, &mut scratch).unwrap_err();
        let message = e.to_string();
        assert!(!message.contains("secret"), "{message}");
        assert!(message.contains(field.key()), "{message}");
        assert!(scratch.is_empty());
        assert!(!format!("{e:?}").contains("secret"));
    }
}

#[test]
fn reasons_are_stable() {
    let invalid = |field| NormalizeError::Invalid { field, why: "x" }.reason();
    let reasons: Vec<&str> = UserField::ALL.into_iter().map(invalid).collect();
    assert_eq!(
        reasons,
        [
            "invalid_em",
            "invalid_ph",
            "invalid_fn",
            "invalid_ln",
            "invalid_db",
            "invalid_ge",
            "invalid_ct",
            "invalid_st",
            "invalid_zp",
            "invalid_country",
            "invalid_external_id",
        ]
    );
    let too_long = NormalizeError::TooLong {
        field: Em,
        len: 600,
    };
    assert_eq!(too_long.reason(), "too_long");
    for field in UserField::ALL {
        assert_eq!(UserField::from_key(field.key()), Some(field));
    }
    assert_eq!(UserField::from_key("client_ip_address"), None);
}

#[test]
fn scratch_is_reused_without_growing() {
    let mut scratch = String::with_capacity(MAX_VALUE_LEN * 4);
    let ptr = scratch.as_ptr();
    let inputs: &[(UserField, &str)] = &[
        (Em, "John_Smith@gmail.com"),
        (Ph, "(650)555-1212"),
        (Fn, "Vale\u{301}ry"),
        (Db, "February 16, 1997"),
        (Country, "United States of America"),
        (St, "Québec"),
        (Ge, "männlich"),
        (Zp, "94025-1234"),
        (ExternalId, "ÉLODIE#42"),
    ];
    for _ in 0..3 {
        for &(field, input) in inputs {
            hash(field, input, &mut scratch).unwrap().unwrap();
            assert_eq!(scratch.as_ptr(), ptr);
        }
    }
}

#[test]
fn tables_are_sorted_unique_and_folded() {
    let tables: [(&str, &[(&str, &str)]); 3] = [
        ("COUNTRIES", tables::COUNTRIES),
        ("STATES", tables::STATES),
        ("GENDERS", tables::GENDERS),
    ];
    for (name, table) in tables {
        for pair in table.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{name}: {:?} !< {:?}",
                pair[0].0,
                pair[1].0
            );
        }
        for &(key, value) in table {
            let folded = fold_key(key).expect("key fits");
            assert_eq!(folded.as_str(), key, "{name}: key not in folded form");
            assert!(!value.is_empty() && value.bytes().all(|b| b.is_ascii_lowercase()));
        }
    }
    // Every country code maps to itself, and every target is a code.
    for &(_, code) in tables::COUNTRIES {
        assert_eq!(code.len(), 2);
        assert_eq!(lookup(tables::COUNTRIES, code), Some(code));
    }
    assert_eq!(
        tables::COUNTRIES.iter().filter(|(k, v)| k == v).count(),
        249
    );
    for &(_, code) in tables::STATES {
        assert_eq!(code.len(), 2);
    }
    for &(_, code) in tables::GENDERS {
        assert!(code == "f" || code == "m");
    }
}
