//! The Go wire-format vectors of tests/data/go-swp/ (made by
//! go-sliding-window itself): every E vector decodes to its fields and
//! encodes back to exactly its bytes; every D vector decodes (and re-encodes
//! canonically); every R vector is refused with a typed error.

use bytes::Bytes;
use serde_json::Value;
use std::path::PathBuf;
use swp::file::bigfile::{GoBigFile, decode_bigfile, encode_bigfile};
use swp::proto::go::codec::{GoPacket, GoTime, decode_packet, encode_packet};

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/go-swp");
    assert!(
        d.join("README.md").exists(),
        "the Go interop vectors are missing at {}: they are part of the repository",
        d.display()
    );
    d
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an i64: {v}"))
}

fn time(v: &Value) -> GoTime {
    GoTime {
        secs: int(&v["unix_sec"]),
        nanos: int(&v["nanos"]) as i32,
    }
}

fn bytes(v: &Value) -> Bytes {
    Bytes::from(unhex(v.as_str().unwrap()))
}

fn s(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

fn packet(f: &Value) -> GoPacket {
    GoPacket {
        from: s(&f["From"]),
        dest: s(&f["Dest"]),
        from_sess_nonce: s(&f["FromSessNonce"]),
        dest_sess_nonce: s(&f["DestSessNonce"]),
        arrived_at_dest_tm: time(&f["ArrivedAtDestTm"]),
        data_send_tm: time(&f["DataSendTm"]),
        seq_num: int(&f["SeqNum"]),
        seq_retry: int(&f["SeqRetry"]),
        ack_num: int(&f["AckNum"]),
        ack_retry: int(&f["AckRetry"]),
        ack_reply_tm: time(&f["AckReplyTm"]),
        tcp_event: int(&f["TcpEvent"]),
        avail_reader_bytes_cap: int(&f["AvailReaderBytesCap"]),
        avail_reader_msg_cap: int(&f["AvailReaderMsgCap"]),
        from_rtt_est_nsec: int(&f["FromRttEstNsec"]),
        from_rtt_sd_nsec: int(&f["FromRttSdNsec"]),
        from_rtt_n: int(&f["FromRttN"]),
        cumul_bytes_transmitted: int(&f["CumulBytesTransmitted"]),
        data: bytes(&f["Data"]),
        data_offset: int(&f["DataOffset"]),
        blake2b_checksum: bytes(&f["Blake2bChecksum"]),
    }
}

fn bigfile(f: &Value) -> GoBigFile {
    GoBigFile {
        filepath: s(&f["Filepath"]),
        size_in_bytes: int(&f["SizeInBytes"]),
        blake2b: bytes(&f["Blake2b"]),
        send_time: time(&f["SendTime"]),
        data: bytes(&f["Data"]),
    }
}

#[test]
fn every_vector() {
    let mut counts = [0usize; 3];
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for path in files {
        let j: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = j["name"].as_str().unwrap();
        let bin = std::fs::read(dir().join(j["bin"].as_str().unwrap())).unwrap();
        let is_file = j["type"] == "BigFile";
        match j["direction"].as_str().unwrap() {
            "encode+decode" => {
                counts[0] += 1;
                if is_file {
                    let want = bigfile(&j["fields"]);
                    assert_eq!(decode_bigfile(&bin).unwrap(), want, "{name}: decode");
                    assert_eq!(encode_bigfile(&want), bin, "{name}: encode");
                } else {
                    let want = packet(&j["fields"]);
                    assert_eq!(decode_packet(&bin).unwrap(), want, "{name}: decode");
                    assert_eq!(encode_packet(&want), bin, "{name}: encode");
                }
            }
            "decode-only" => {
                counts[1] += 1;
                let got = decode_packet(&bin).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got, packet(&j["fields"]), "{name}: decode");
                if let Some(hex) = j["canonical_reencoding_hex"].as_str() {
                    assert_eq!(
                        encode_packet(&got),
                        unhex(hex),
                        "{name}: canonical re-encoding"
                    );
                }
            }
            "reject" => {
                counts[2] += 1;
                let r = decode_packet(&bin);
                assert!(
                    r.is_err(),
                    "{name}: Go rejects this ({}), so must we",
                    j["go_decode_error"]
                );
            }
            other => panic!("{name}: unknown direction {other}"),
        }
    }
    assert_eq!(counts, [15, 3, 3], "vectors per direction (E, D, R)");
}

#[test]
fn bigfile_header_parses_from_any_prefix_of_the_stream() {
    use swp::file::bigfile::parse_bigfile_header;
    let b = std::fs::read(dir().join("bigfile.bin")).unwrap();
    let whole = decode_bigfile(&b).unwrap();
    let header_len = b.len() - whole.data.len();
    for n in 0..header_len {
        assert_eq!(parse_bigfile_header(&b[..n]), Ok(None), "prefix {n}");
    }
    for n in header_len..=b.len() {
        let (h, used) = parse_bigfile_header(&b[..n]).unwrap().unwrap();
        assert_eq!(used, header_len);
        assert_eq!(h.filepath, whole.filepath);
        assert_eq!(h.size_in_bytes, whole.size_in_bytes);
        assert_eq!(h.blake2b, whole.blake2b);
        assert_eq!(h.send_time, whole.send_time);
        assert_eq!(h.data_len, whole.data.len() as u64);
    }
    // Not a map, or Data not last: refused, not "need more".
    assert!(parse_bigfile_header(&[0x93, 1, 2, 3]).is_err());
    assert!(parse_bigfile_header(&[0x82, 0xa4, b'D', b'a', b't', b'a', 0xc4, 0]).is_err());
}
