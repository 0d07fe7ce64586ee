//! SMTP and LMTP as bytes and replies, apart from any session's decisions: reading command
//! lines ([`command`]), reading and writing message content ([`content`]), and the replies
//! ([`reply`]). Parsing is smtp-proto's sans-IO receivers; the functions here add limits and
//! the buffering of [`postbay_net::wire::Wire`].

pub mod command;
pub mod content;
pub mod reply;

pub use command::{read_line, CommandReader, MAX_COMMAND_LINE};
pub use content::{decode_data, dot_stuff, normalize_bare_lf, read_chunk, read_data, Content};
pub use reply::{multiline, QueueReply, Reply};
