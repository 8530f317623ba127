//! The admin console's language: `SHOW <view>`, `RELOAD`, `PAUSE [db]`, `RESUME [db]`,
//! `RECONNECT [db]`, `KILL_CLIENT <id>`, `SHUTDOWN`; keywords in any case, one command per
//! query, an optional trailing `;`. A database may be written bare or "double quoted".

use super::AdminError;

/// Every command, for the error that answers an unknown one.
pub const COMMAND_LIST: &str = "SHOW POOLS | CLIENTS | SERVERS | STATS | STATS_TOTALS | DATABASES | USERS | CONFIG \
| LISTS | VERSION | WORKSPACES | HELP; RELOAD; PAUSE [db]; RESUME [db]; RECONNECT [db]; KILL_CLIENT id; SHUTDOWN";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(View),
    Reload,
    Pause(Option<String>),
    Resume(Option<String>),
    Reconnect(Option<String>),
    KillClient(u64),
    Shutdown,
    /// An empty query (psql sends one for a lone `;`).
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Pools,
    Clients,
    Servers,
    Stats,
    StatsTotals,
    Databases,
    Users,
    Config,
    Lists,
    Version,
    Workspaces,
    Help,
}

impl View {
    pub const ALL: [(&'static str, View); 12] = [
        ("pools", View::Pools),
        ("clients", View::Clients),
        ("servers", View::Servers),
        ("stats", View::Stats),
        ("stats_totals", View::StatsTotals),
        ("databases", View::Databases),
        ("users", View::Users),
        ("config", View::Config),
        ("lists", View::Lists),
        ("version", View::Version),
        ("workspaces", View::Workspaces),
        ("help", View::Help),
    ];
}

impl Command {
    /// The CommandComplete tag of a successful run.
    pub fn tag(&self) -> &'static str {
        match self {
            Command::Show(_) => "SHOW",
            Command::Reload => "RELOAD",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Reconnect(_) => "RECONNECT",
            Command::KillClient(_) => "KILL_CLIENT",
            Command::Shutdown => "SHUTDOWN",
            Command::Empty => "",
        }
    }
}

/// Reads one query of the console.
pub fn parse(query: &str) -> Result<Command, AdminError> {
    let syntax = |reason: &str| AdminError::Syntax { query: query.trim().to_owned(), reason: reason.to_owned() };
    let mut text = query.trim();
    if let Some(rest) = text.strip_suffix(';') {
        text = rest.trim_end();
    }
    let words = split_words(text).map_err(syntax)?;
    let Some((first, args)) = words.split_first() else {
        return Ok(Command::Empty);
    };
    let keyword = match first {
        Word::Bare(w) => w.to_ascii_lowercase(),
        Word::Quoted(_) => return Err(syntax("a command starts with a keyword")),
    };
    let one_optional = |args: &[Word]| match args {
        [] => Ok(None),
        [db] => Ok(Some(db.text().to_owned())),
        _ => Err(syntax("it takes at most one database")),
    };
    match keyword.as_str() {
        "show" => match args {
            [Word::Bare(name)] => View::ALL
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|&(_, view)| Command::Show(view))
                .ok_or_else(|| syntax("no such view")),
            [] => Err(syntax("SHOW needs a view")),
            _ => Err(syntax("SHOW takes one view")),
        },
        "reload" if args.is_empty() => Ok(Command::Reload),
        "shutdown" if args.is_empty() => Ok(Command::Shutdown),
        "reload" | "shutdown" => Err(syntax("it takes no arguments")),
        "pause" => one_optional(args).map(Command::Pause),
        "resume" => one_optional(args).map(Command::Resume),
        "reconnect" => one_optional(args).map(Command::Reconnect),
        "kill_client" => match args {
            [Word::Bare(id)] => id.parse().map(Command::KillClient).map_err(|_| syntax("the client id is a number")),
            _ => Err(syntax("KILL_CLIENT takes one client id (SHOW CLIENTS, column id)")),
        },
        _ => Err(syntax("unknown command")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Bare(String),
    Quoted(String),
}

impl Word {
    fn text(&self) -> &str {
        match self {
            Word::Bare(w) | Word::Quoted(w) => w,
        }
    }
}

/// Splits on whitespace; a double-quoted word may hold anything, `""` being a quote.
fn split_words(text: &str) -> Result<Vec<Word>, &'static str> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == ';' {
            return Err("one command per query");
        }
        if c == '"' {
            chars.next();
            let mut word = String::new();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        word.push('"');
                    }
                    Some('"') => break,
                    Some(c) => word.push(c),
                    None => return Err("a quoted name is not closed"),
                }
            }
            if word.is_empty() {
                return Err("an empty quoted name");
            }
            words.push(Word::Quoted(word));
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '"' || c == ';' {
                break;
            }
            word.push(c);
            chars.next();
        }
        words.push(Word::Bare(word));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_in_any_case_with_an_optional_semicolon() {
        assert_eq!(parse("show pools"), Ok(Command::Show(View::Pools)));
        assert_eq!(parse("  SHOW Stats_Totals ;  "), Ok(Command::Show(View::StatsTotals)));
        assert_eq!(parse("Reload;"), Ok(Command::Reload));
        assert_eq!(parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(parse("pause akko"), Ok(Command::Pause(Some("akko".into()))));
        assert_eq!(parse("RESUME \"My \"\"DB\"\"\""), Ok(Command::Resume(Some("My \"DB\"".into()))));
        assert_eq!(parse("reconnect rag;"), Ok(Command::Reconnect(Some("rag".into()))));
        assert_eq!(parse("KILL_CLIENT 42"), Ok(Command::KillClient(42)));
        assert_eq!(parse("shutdown"), Ok(Command::Shutdown));
        assert_eq!(parse(" ; "), Ok(Command::Empty));
        assert_eq!(parse(""), Ok(Command::Empty));
    }

    #[test]
    fn everything_else_is_a_syntax_error() {
        for bad in [
            "SELECT 1",
            "SHOW",
            "SHOW nothing",
            "SHOW POOLS extra",
            "PAUSE a b",
            "KILL_CLIENT",
            "KILL_CLIENT x",
            "RELOAD now",
            "SHOW POOLS; SHOW STATS",
            "PAUSE \"open",
            "\"show\" pools",
        ] {
            assert!(matches!(parse(bad), Err(AdminError::Syntax { .. })), "{bad}");
        }
    }
}
