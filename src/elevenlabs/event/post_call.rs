//! `post_call_transcription`: an agent conversation, once it has ended and been analysed.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::lenient::{lenient_str_enum, lenient_struct};

lenient_struct! {
    /// The `data` of a `post_call_transcription` event: what `GET /v1/convai/conversations/{id}`
    /// answers for the conversation (every field optional in practice).
    pub struct PostCallTranscription<'a> {
        /// The agent that held the conversation.
        "agent_id" => agent_id: Option<Cow<'a, str>>,
        /// The agent's name.
        "agent_name" => agent_name: Option<Cow<'a, str>>,
        /// The conversation, shared with its `post_call_audio` event.
        "conversation_id" => conversation_id: Option<Cow<'a, str>>,
        /// The conversation's status (`done`).
        "status" => status: Option<Cow<'a, str>>,
        /// The user id given when the conversation started.
        "user_id" => user_id: Option<Cow<'a, str>>,
        /// The agent's branch.
        "branch_id" => branch_id: Option<Cow<'a, str>>,
        /// The agent's version.
        "version_id" => version_id: Option<Cow<'a, str>>,
        /// The agent's environment.
        "environment" => environment: Option<Cow<'a, str>>,
        /// The turns, in order.
        "transcript" => transcript: Option<Vec<Turn<'a>>>,
        /// Timing, cost and how the call ended.
        "metadata" => metadata: Option<CallMetadata<'a>>,
        /// The analysis: evaluation criteria, data collection, summary.
        "analysis" => analysis: Option<Analysis<'a>>,
        /// What the conversation was started with: overrides, dynamic variables.
        "conversation_initiation_client_data" => conversation_initiation_client_data: Option<ConversationInitiationClientData>,
        /// Whether any audio of the conversation is available (since 2025-08-15).
        "has_audio" => has_audio: Option<bool>,
        /// Whether the user's audio is available (since 2025-08-15).
        "has_user_audio" => has_user_audio: Option<bool>,
        /// Whether the agent's audio is available (since 2025-08-15).
        "has_response_audio" => has_response_audio: Option<bool>,
    }
}

impl<'a> PostCallTranscription<'a> {
    /// The turns (empty when the sender gave none).
    #[must_use]
    pub fn turns(&self) -> &[Turn<'a>] {
        self.transcript.as_deref().unwrap_or(&[])
    }
}

lenient_struct! {
    /// One turn of a conversation.
    pub struct Turn<'a> {
        /// Who spoke.
        "role" => role: Option<Role<'a>>,
        /// What was said (`null` for a turn that only calls tools).
        "message" => message: Option<Cow<'a, str>>,
        /// The tools the agent called in this turn.
        "tool_calls" => tool_calls: Option<Vec<ToolCall<'a>>>,
        /// The tools' results.
        "tool_results" => tool_results: Option<Vec<ToolResult<'a>>>,
        /// The user's feedback on the turn, as received.
        "feedback" => feedback: Option<Value>,
        /// When the turn started, in seconds from the start of the call.
        "time_in_call_secs" => time_in_call_secs: Option<f64>,
        /// Latency metrics of the turn (e.g. `convai_llm_service_ttfb`), as received.
        "conversation_turn_metrics" => conversation_turn_metrics: Option<Value>,
    }
}

lenient_str_enum! {
    /// Who spoke a [`Turn`].
    pub enum Role<'a> {
        /// The agent.
        "agent" => Agent,
        /// The user (the caller, or the person called).
        "user" => User,
    }
}

lenient_struct! {
    /// A tool the agent called.
    pub struct ToolCall<'a> {
        /// The tool's kind (`webhook`, `client`, `system`, ...): the JSON `type`.
        "type" => kind: Option<Cow<'a, str>>,
        /// The call's id, matching its [`ToolResult`].
        "request_id" => request_id: Option<Cow<'a, str>>,
        /// The tool's name.
        "tool_name" => tool_name: Option<Cow<'a, str>>,
        /// The parameters, as JSON text.
        "params_as_json" => params_as_json: Option<Cow<'a, str>>,
        /// Whether the tool was actually called.
        "tool_has_been_called" => tool_has_been_called: Option<bool>,
        /// The tool's details, as received.
        "tool_details" => tool_details: Option<Value>,
    }
}

lenient_struct! {
    /// What a tool call returned.
    pub struct ToolResult<'a> {
        /// The tool's kind: the JSON `type`.
        "type" => kind: Option<Cow<'a, str>>,
        /// The id of the [`ToolCall`] this answers.
        "request_id" => request_id: Option<Cow<'a, str>>,
        /// The tool's name.
        "tool_name" => tool_name: Option<Cow<'a, str>>,
        /// What it returned, as text.
        "result_value" => result_value: Option<Cow<'a, str>>,
        /// Whether it failed.
        "is_error" => is_error: Option<bool>,
        /// Whether the tool was actually called.
        "tool_has_been_called" => tool_has_been_called: Option<bool>,
    }
}

lenient_struct! {
    /// A conversation's metadata.
    pub struct CallMetadata<'a> {
        /// When the call started, Unix seconds.
        "start_time_unix_secs" => start_time_unix_secs: Option<i64>,
        /// How long it lasted, in seconds.
        "call_duration_secs" => call_duration_secs: Option<f64>,
        /// What it cost, in credits.
        "cost" => cost: Option<f64>,
        /// When the conversation's logs, audio and transcript are deleted, as received.
        "deletion_settings" => deletion_settings: Option<Value>,
        /// The call's overall feedback (score, likes), as received.
        "feedback" => feedback: Option<Value>,
        /// How the conversation was authorized, e.g. `authorization_header`.
        "authorization_method" => authorization_method: Option<Cow<'a, str>>,
        /// Charging details, as received.
        "charging" => charging: Option<Value>,
        /// Why the call ended.
        "termination_reason" => termination_reason: Option<Cow<'a, str>>,
    }
}

lenient_struct! {
    /// The analysis of a conversation.
    pub struct Analysis<'a> {
        /// Each evaluation criterion's result, by criterion id, as received.
        "evaluation_criteria_results" => evaluation_criteria_results: Option<Map<String, Value>>,
        /// Each data collection item's result, by item id, as received.
        "data_collection_results" => data_collection_results: Option<Map<String, Value>>,
        /// Whether the call achieved its goal: `success`, `failure` or `unknown`.
        "call_successful" => call_successful: Option<Cow<'a, str>>,
        /// A summary of the conversation.
        "transcript_summary" => transcript_summary: Option<Cow<'a, str>>,
    }
}

lenient_struct! {
    /// What a conversation was started with.
    pub struct ConversationInitiationClientData {
        /// Overrides of the agent's configuration, as received.
        "conversation_config_override" => conversation_config_override: Option<Value>,
        /// Extra body sent to a custom LLM, as received.
        "custom_llm_extra_body" => custom_llm_extra_body: Option<Value>,
        /// The dynamic variables (strings, numbers, booleans).
        "dynamic_variables" => dynamic_variables: Option<Map<String, Value>>,
    }
}
