//! `optlab papers`: the 42 seed papers, their status and where they live (from the method registry).

use anyhow::Result;
use clap::Args;
use optlab::registry::{papers, papers_markdown};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab papers\n  optlab papers --json | jq '.[] | select(.status == \"implemented\") | .id'\n  optlab papers --markdown > docs/papers.md"
)]
pub struct PapersArgs {
    /// One JSON array of 42 rows (id, title, summary, status, missing, methods, modules, commands) on stdout.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// The table as Markdown (docs/papers.md).
    #[arg(long)]
    pub markdown: bool,
}

pub fn run(a: PapersArgs) -> Result<()> {
    if a.json {
        println!("{}", serde_json::to_string(&papers())?);
        return Ok(());
    }
    if a.markdown {
        print!("{}", papers_markdown());
        return Ok(());
    }
    for r in papers() {
        let place = if r.modules.is_empty() {
            String::new()
        } else {
            format!("  {}  ({})", r.modules.join(", "), r.commands.join("; "))
        };
        println!("{}  {:<11} {}{place}", r.id, r.status.name(), r.title);
    }
    Ok(())
}
