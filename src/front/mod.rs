//! Front doors: the client protocols Junction serves besides OpenAI chat completions. Each
//! translates its own requests into the chat-completions form the providers already speak,
//! and the chat-completions answers (whole or streamed) back into its own form.

pub mod messages;
