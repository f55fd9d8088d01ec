use super::*;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn pairs(fields: &[Field]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|f| {
            (
                String::from_utf8(f.name.to_vec()).unwrap(),
                String::from_utf8(f.value.to_vec()).unwrap(),
            )
        })
        .collect()
}

fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn decoder() -> Decoder {
    Decoder::new(4096, 1 << 20)
}

fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// RFC 7541 C.3 and C.4: the same three requests, plain and Huffman-coded, on one
/// connection; the dynamic table grows to 57, 110 and 164 bytes.
#[test]
fn decodes_rfc_request_examples_plain_and_huffman() {
    let plain = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    let huffman = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];
    let expected = [
        owned(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]),
        owned(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ]),
        owned(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]),
    ];
    for blocks in [plain, huffman] {
        let mut d = decoder();
        for ((block, want), size) in blocks.iter().zip(&expected).zip([57, 110, 164]) {
            assert_eq!(pairs(&d.decode(&hex(block)).unwrap()), *want);
            assert_eq!(d.table_size(), size);
        }
        assert_eq!(d.table_len(), 3);
    }
}

/// RFC 7541 C.5: responses with a 256-byte table, so entries are evicted.
#[test]
fn decodes_rfc_response_examples_with_eviction() {
    let mut d = Decoder::new(256, 1 << 20);
    let first = d
        .decode(&hex(
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
        ))
        .unwrap();
    assert_eq!(
        pairs(&first),
        owned(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ])
    );
    assert_eq!(d.table_size(), 222);
    let second = d.decode(&hex("4803 3330 37c1 c0bf")).unwrap();
    assert_eq!(
        pairs(&second),
        owned(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ])
    );
    assert_eq!(d.table_size(), 222);
    let third = d
        .decode(&hex(
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
             3d31",
        ))
        .unwrap();
    assert_eq!(
        pairs(&third),
        owned(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
            ),
        ])
    );
    assert_eq!(d.table_size(), 215);
    assert_eq!(d.table_len(), 3);
}

#[test]
fn integers_round_trip_at_every_prefix() {
    for prefix in 1..=7u8 {
        for value in [0usize, 1, 30, 31, 126, 127, 128, 255, 1337, 65535, 1 << 20] {
            let mut out = Vec::new();
            encode_integer(&mut out, value, prefix, 0);
            let mut r = Reader { buf: &out, pos: 0 };
            assert_eq!(r.integer(prefix).unwrap(), value, "prefix {prefix}");
            assert_eq!(r.pos, out.len());
        }
    }
    // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
    let mut out = Vec::new();
    encode_integer(&mut out, 1337, 5, 0);
    assert_eq!(out, [31, 154, 10]);
}

#[test]
fn refuses_oversized_and_truncated_integers() {
    let mut r = Reader {
        buf: &[0x7f, 0xff, 0xff, 0xff, 0xff, 0x7f],
        pos: 0,
    };
    assert_eq!(r.integer(7), Err(HpackError::IntegerOverflow));
    let mut r = Reader {
        buf: &[0x7f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        pos: 0,
    };
    assert_eq!(r.integer(7), Err(HpackError::IntegerOverflow));
    let mut r = Reader {
        buf: &[0x7f, 0x80],
        pos: 0,
    };
    assert_eq!(r.integer(7), Err(HpackError::Truncated));
}

#[test]
fn size_updates_evict_and_are_bounded_and_only_at_the_start() {
    let mut d = decoder();
    d.decode(&hex("418c f1e3 c2e5 f23a 6ba0 ab90 f4ff"))
        .unwrap();
    assert_eq!(d.table_len(), 1);
    let mut block = Vec::new();
    encode_integer(&mut block, 0, 5, 0x20);
    encode_integer(&mut block, 4096, 5, 0x20);
    block.push(0x82);
    assert_eq!(
        pairs(&d.decode(&block).unwrap()),
        owned(&[(":method", "GET")])
    );
    assert_eq!(d.table_len(), 0, "a size update to 0 empties the table");

    let mut too_big = Vec::new();
    encode_integer(&mut too_big, 4097, 5, 0x20);
    too_big.push(0x82);
    assert_eq!(
        d.decode(&too_big),
        Err(HpackError::TableSize {
            asked: 4097,
            allowed: 4096
        })
    );

    let mut late = vec![0x82];
    encode_integer(&mut late, 100, 5, 0x20);
    assert_eq!(decoder().decode(&late), Err(HpackError::LateSizeUpdate));
}

#[test]
fn an_entry_larger_than_the_table_empties_it() {
    let mut d = Decoder::new(64, 1 << 20);
    let mut block = vec![0x40];
    encode_string(&mut block, b"a");
    encode_string(&mut block, b"b");
    d.decode(&block).unwrap();
    assert_eq!((d.table_len(), d.table_size()), (1, 34));
    let mut big = vec![0x40];
    encode_string(&mut big, b"name");
    encode_string(&mut big, &[b'x'; 40]);
    d.decode(&big).unwrap();
    assert_eq!((d.table_len(), d.table_size()), (0, 0));
    assert_eq!(d.decode(&[0xbe]), Err(HpackError::BadIndex(62)));
}

#[test]
fn refuses_bad_indexes_truncation_bad_huffman_and_huge_lists() {
    assert_eq!(decoder().decode(&[0x80]), Err(HpackError::BadIndex(0)));
    assert_eq!(decoder().decode(&[0xbe]), Err(HpackError::BadIndex(62)));
    assert_eq!(decoder().decode(&[0x01]), Err(HpackError::Truncated));
    assert_eq!(
        decoder().decode(&[0x00, 0x03, b'a']),
        Err(HpackError::Truncated)
    );
    assert_eq!(
        decoder().decode(&[0x41, 0x05, b'a']),
        Err(HpackError::Truncated)
    );
    // A Huffman string of all ones: the 30-bit EOS code, which must not appear.
    assert_eq!(
        decoder().decode(&[0x01, 0x84, 0xff, 0xff, 0xff, 0xff]),
        Err(HpackError::Huffman)
    );
    let mut d = Decoder::new(4096, 100);
    let mut block = Vec::new();
    for _ in 0..3 {
        block.push(0x00);
        encode_string(&mut block, b"name");
        encode_string(&mut block, b"value");
    }
    assert_eq!(d.decode(&block), Err(HpackError::ListTooLarge(100)));
}

#[test]
fn never_indexed_is_kept_and_re_encoded() {
    let mut block = vec![0x10];
    encode_string(&mut block, b"authorization");
    encode_string(&mut block, b"secret");
    let fields = decoder().decode(&block).unwrap();
    assert!(fields[0].never_indexed);
    let mut out = Vec::new();
    encode_literal(&mut out, &fields[0]);
    assert_eq!(out, block);
    let mut d = decoder();
    assert_eq!(d.decode(&out).unwrap(), fields);
    assert_eq!(d.table_len(), 0, "literals are never added to the table");
}

/// An independent encoder with a dynamic table (fluke-hpack) against this decoder, over
/// many blocks on one connection with a small table so that entries are evicted all the
/// time; and every decoded block re-encoded as literals decodes the same again.
#[test]
fn follows_an_independent_encoder_through_evictions() {
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let mut enc = fluke_hpack::Encoder::new();
    enc.set_max_table_size(256);
    let mut dec = decoder();
    let mut plain = decoder();
    let names = [
        ":authority",
        ":path",
        "user-agent",
        "x-a",
        "x-bb",
        "te",
        "content-type",
    ];
    for round in 0..500 {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..(next() % 8) + 1)
            .map(|_| {
                let name = names[(next() % names.len() as u64) as usize]
                    .as_bytes()
                    .to_vec();
                let len = (next() % 40) as usize;
                let value = (0..len).map(|_| b'a' + (next() % 26) as u8).collect();
                (name, value)
            })
            .collect();
        let mut block = Vec::new();
        if round == 0 {
            encode_integer(&mut block, 256, 5, 0x20);
        }
        block.extend(enc.encode(fields.iter().map(|(n, v)| (&n[..], &v[..]))));
        let decoded = dec.decode(&block).unwrap();
        let got: Vec<(Vec<u8>, Vec<u8>)> = decoded
            .iter()
            .map(|f| (f.name.to_vec(), f.value.to_vec()))
            .collect();
        assert_eq!(got, fields, "round {round}");
        assert!(dec.table_size() <= 256);
        let mut again = Vec::new();
        for f in &decoded {
            encode_literal(&mut again, f);
        }
        assert_eq!(plain.decode(&again).unwrap(), decoded);
    }
    assert_eq!(plain.table_len(), 0);
}

/// Random and mutated blocks: errors, never a panic, and the table stays within bounds.
#[test]
fn never_panics_on_garbage() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let valid = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
    let mut d = Decoder::new(512, 4096);
    for i in 0..50_000 {
        let block: Vec<u8> = if i % 2 == 0 {
            (0..next() % 64).map(|_| next() as u8).collect()
        } else {
            let mut b = valid.clone();
            let at = (next() as usize) % b.len();
            b[at] = next() as u8;
            b.truncate((next() as usize) % (b.len() + 1));
            b
        };
        let _ = d.decode(&block);
        assert!(d.table_size() <= 512);
    }
}
