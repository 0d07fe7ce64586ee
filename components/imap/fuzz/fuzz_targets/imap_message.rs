//! Feeds arbitrary bytes as a stored message through everything FETCH and SEARCH derive
//! from it: ENVELOPE, BODYSTRUCTURE, sections, BINARY, searchable text, and the response
//! encoder. Oracle: no panic, and BODY[] is the message itself.
#![no_main]

use std::num::NonZeroU32;

use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::{MessageDataItem, Part, Section};
use imap_codec::imap_types::response::{Data, Response};
use libfuzzer_sys::fuzz_target;
use postbay_imap::message::Parsed;

fuzz_target!(|data: &[u8]| {
    let p = Parsed::new(data);
    assert_eq!(p.section(None).unwrap().as_ref(), data);
    let envelope = p.envelope();
    let structure = p.body_structure(true);
    let _ = p.header_search_values("subject");
    let _ = p.body_search_text();
    for path in [&[1u32][..], &[2], &[1, 1], &[2, 1, 3]] {
        let nz: Vec<NonZeroU32> = path.iter().map(|n| NonZeroU32::new(*n).unwrap()).collect();
        let part = Part(Vec1::try_from(nz.clone()).unwrap());
        let _ = p.section(Some(&Section::Part(part.clone())));
        let _ = p.section(Some(&Section::Mime(part.clone())));
        let _ = p.section(Some(&Section::Header(Some(part.clone()))));
        let _ = p.section(Some(&Section::Text(Some(part))));
        let _ = p.binary(&nz);
    }
    let items = Vec1::try_from(vec![
        MessageDataItem::Envelope(envelope),
        MessageDataItem::BodyStructure(structure),
    ])
    .unwrap();
    let response = Response::Data(Data::Fetch {
        seq: NonZeroU32::new(1).unwrap(),
        items,
    });
    let _ = imap_codec::ResponseCodec::default()
        .encode(&response)
        .dump();
});
