"""What people look at: `figures` (every PNG of the study), and the report and quality pages
built as functions over the stages' JSON."""
