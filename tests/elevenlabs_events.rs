//! Typed ElevenLabs events: every documented example parses to the right variant with the right
//! values, nothing unknown is lost on a round trip, the documents' disagreements are all
//! accepted, big bodies (an hour of transcript, megabytes of audio) parse and decode exactly,
//! and no input makes the parser panic.

#[path = "support/elevenlabs_fixtures.rs"]
mod fixtures;

use std::{
    borrow::Cow,
    io::{self, Write},
    time::{Duration, UNIX_EPOCH},
};

use base64::Engine as _;
use hookgate::{
    elevenlabs::{
        event_id, Base64Audio, Event, FailureBody, FailureReason, Role, Timestamp, Transcription,
        WebhookMetadata, WordKind,
    },
    scheme::ElevenLabs,
    Scheme,
};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/elevenlabs/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every JSON fixture, with the variant it must parse to.
const FIXTURES: [(&str, &str); 18] = [
    (
        "speech_to_text_transcription.json",
        "speech_to_text_transcription",
    ),
    (
        "speech_to_text_metadata_string.json",
        "speech_to_text_transcription",
    ),
    ("speech_to_text_full.json", "speech_to_text_transcription"),
    (
        "speech_to_text_multichannel.json",
        "speech_to_text_transcription",
    ),
    (
        "speech_to_text_completed.json",
        "speech_to_text_transcription",
    ),
    ("speech_to_text_bare.json", "speech_to_text_transcription"),
    (
        "speech_to_text_test_vector.json",
        "speech_to_text_transcription",
    ),
    ("post_call_transcription.json", "post_call_transcription"),
    (
        "post_call_transcription_tools.json",
        "post_call_transcription",
    ),
    ("post_call_audio.json", "post_call_audio"),
    ("data_before_type.json", "post_call_audio"),
    (
        "call_initiation_failure_sip.json",
        "call_initiation_failure",
    ),
    (
        "call_initiation_failure_twilio.json",
        "call_initiation_failure",
    ),
    ("voice_removal_notice.json", "voice_removal_notice"),
    (
        "voice_removal_notice_withdrawn.json",
        "voice_removal_notice_withdrawn",
    ),
    ("voice_removed.json", "voice_removed"),
    ("unknown_type.json", "post_call_transcription_otel"),
    ("unknown_fields.json", "speech_to_text_transcription"),
];

/// `value` with the entries whose value is `null` removed (a known field that was `null` is
/// `None`, and left out when serialized), and every number as an `f64` (`0` and `0.0` are one
/// number).
fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Number(n) => json!(n.as_f64().unwrap()),
        other => other.clone(),
    }
}

fn stt<'e, 'a>(event: &'e Event<'a>) -> &'e hookgate::elevenlabs::SpeechToTextTranscription<'a> {
    match event {
        Event::SpeechToTextTranscription(e) => &e.data,
        other => panic!("not a transcription: {}", other.event_type()),
    }
}

fn single<'e, 'a>(event: &'e Event<'a>) -> &'e hookgate::elevenlabs::Transcript<'a> {
    match event {
        Event::SpeechToTextTranscription(e) => match e.data.transcription.as_ref().unwrap() {
            Transcription::Single(transcript) => transcript,
            other => panic!("not one channel: {other:?}"),
        },
        other => panic!("not a transcription: {}", other.event_type()),
    }
}

#[test]
fn every_fixture_parses_to_its_variant() {
    for (name, event_type) in FIXTURES {
        let body = fixture(name);
        let event = Event::from_slice(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.event_type(), event_type, "{name}");
        let is_unknown = matches!(event, Event::Unknown(_));
        assert_eq!(is_unknown, name == "unknown_type.json", "{name}");
    }
}

#[test]
fn the_documented_speech_to_text_example_reads_as_written() {
    let body = fixture("speech_to_text_transcription.json");
    let event = Event::from_slice(&body).unwrap();
    assert_eq!(
        event.event_timestamp().unwrap().unix_secs(),
        Some(1_739_537_297)
    );
    assert_eq!(event.event_id(), Some("some-request-id-123"));
    let data = stt(&event);
    assert_eq!(data.request_id.as_deref(), Some("some-request-id-123"));
    let Some(WebhookMetadata::Object(metadata)) = &data.webhook_metadata else {
        panic!("{:?}", data.webhook_metadata);
    };
    assert_eq!(metadata["job"], "42");

    let transcript = single(&event);
    assert_eq!(transcript.language_code.as_deref(), Some("en"));
    assert_eq!(transcript.language_probability, Some(0.98));
    assert_eq!(transcript.text.as_deref(), Some("Hello world!"));
    let words = transcript.words();
    assert_eq!(words.len(), 3);
    let expected = [
        ("Hello", WordKind::Word, 0.0, 0.5, -0.1),
        (" ", WordKind::Spacing, 0.5, 0.5, 0.0),
        ("world!", WordKind::Word, 0.5, 1.2, -0.2),
    ];
    for (word, (text, kind, start, end, logprob)) in words.iter().zip(expected) {
        assert_eq!(word.text.as_deref(), Some(text));
        assert_eq!(word.kind, Some(kind));
        assert_eq!((word.start, word.end), (Some(start), Some(end)));
        assert_eq!(word.speaker_id.as_deref(), Some("speaker_1"));
        assert_eq!(word.logprob, Some(logprob));
        assert_eq!(word.characters, None);
        assert!(word.extra.is_empty());
        // Borrowed from the body: no escape sequence in any of them.
        assert!(matches!(word.text, Some(Cow::Borrowed(_))));
    }
}

#[test]
fn webhook_metadata_given_as_a_string_and_no_timestamp() {
    let body = fixture("speech_to_text_metadata_string.json");
    let event = Event::from_slice(&body).unwrap();
    assert_eq!(event.event_timestamp(), None);
    let metadata = stt(&event).webhook_metadata.as_ref().unwrap();
    let WebhookMetadata::Text(text) = metadata else {
        panic!("{metadata:?}");
    };
    assert_eq!(text, r#"{"job":"42","user":"u_7"}"#);
    let object = metadata.to_object().unwrap();
    assert_eq!(object["user"], "u_7");

    // Words without `logprob`, as in the documentation's examples; an integer probability.
    let transcript = single(&event);
    assert_eq!(transcript.language_probability, Some(1.0));
    assert_eq!(transcript.words()[0].logprob, None);
    assert_eq!(transcript.words()[0].start, Some(0.0));
}

#[test]
fn every_optional_transcript_field_is_typed() {
    let body = fixture("speech_to_text_full.json");
    let event = Event::from_slice(&body).unwrap();
    let transcript = single(&event);
    assert_eq!(transcript.transcription_id.as_deref(), Some("tr_abc123"));
    assert_eq!(transcript.audio_duration_secs, Some(3.25));

    let words = transcript.words();
    let kinds: Vec<_> = words.iter().map(|w| w.kind.clone().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            WordKind::Word,
            WordKind::Spacing,
            WordKind::AudioEvent,
            WordKind::Spacing,
            WordKind::Word,
            WordKind::Other(Cow::Borrowed("filler")),
        ]
    );
    assert_eq!(kinds[5].as_str(), "filler");
    assert_eq!(words[2].text.as_deref(), Some("(laughter)"));

    let cafe = words[0].characters.as_ref().unwrap();
    let text: String = cafe.iter().map(|c| c.text.as_deref().unwrap()).collect();
    assert_eq!(text, "Café");
    assert_eq!((cafe[3].start, cafe[3].end), (Some(0.42), Some(0.58)));
    let marie = words[4].characters.as_ref().unwrap();
    assert_eq!((marie[0].start, marie[0].end), (None, None));
    assert_eq!((marie[1].start, marie[1].end), (Some(2.0), None));

    let formats = transcript.additional_formats.as_ref().unwrap();
    assert_eq!(formats.len(), 3);
    assert!(formats[1].is_none());
    let srt = formats[0].as_ref().unwrap();
    assert_eq!(srt.requested_format.as_deref(), Some("srt"));
    assert_eq!(srt.is_base64_encoded, Some(false));
    let mut out = Vec::new();
    srt.write_content_to(&mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "1\n00:00:00,120 --> 00:00:02,400\nCafé (laughter) Marie\n"
    );
    // The text had `\n` escapes: serde_json unescaped it into a copy.
    assert!(matches!(srt.content, Some(Cow::Owned(_))));
    let docx = formats[2].as_ref().unwrap();
    let mut out = Vec::new();
    docx.write_content_to(&mut out).unwrap();
    assert_eq!(out, b"PK\x03\x04 not really a docx");

    let entity = &transcript.entities.as_ref().unwrap()[0];
    assert_eq!(entity.text.as_deref(), Some("Marie"));
    assert_eq!(entity.entity_type.as_deref(), Some("person_name"));
    assert_eq!((entity.start_char, entity.end_char), (Some(16), Some(21)));
}

#[test]
fn multichannel_transcripts_keep_their_channel_index() {
    let body = fixture("speech_to_text_multichannel.json");
    let event = Event::from_slice(&body).unwrap();
    let transcription = stt(&event).transcription.as_ref().unwrap();
    let Transcription::Multichannel(multi) = transcription else {
        panic!("{transcription:?}");
    };
    assert_eq!(multi.transcription_id.as_deref(), Some("tr_multi"));
    assert_eq!(multi.audio_duration_secs, Some(2.0));
    assert_eq!(transcription.transcription_id(), Some("tr_multi"));
    let channels = transcription.transcripts();
    assert_eq!(channels.len(), 2);
    for (index, channel) in channels.iter().enumerate() {
        assert_eq!(channel.channel_index, Some(index as i64));
        assert!(channel
            .words()
            .iter()
            .all(|w| w.channel_index == Some(index as i64)));
    }
    assert_eq!(channels[1].text.as_deref(), Some("Hi there."));
    assert_eq!(channels[1].words().len(), 3);
}

#[test]
fn the_other_documented_type_name_is_a_transcription_written_back_with_the_first() {
    let body = fixture("speech_to_text_completed.json");
    let event = Event::from_slice(&body).unwrap();
    assert_eq!(stt(&event).request_id.as_deref(), Some("req_completed"));
    assert_eq!(event.event_type(), "speech_to_text_transcription");
    let written = serde_json::to_value(&event).unwrap();
    assert_eq!(written["type"], "speech_to_text_transcription");
}

#[test]
fn a_bare_transcription_without_envelope_is_a_transcription() {
    let body = fixture("speech_to_text_bare.json");
    let event = Event::from_slice(&body).unwrap();
    assert_eq!(event.event_timestamp(), None);
    assert_eq!(event.event_id(), None);
    let transcript = single(&event);
    assert_eq!(transcript.language_code.as_deref(), Some("de"));
    assert_eq!(transcript.words().len(), 3);
    // Written back in the envelope.
    let written = serde_json::to_value(&event).unwrap();
    assert_eq!(written["data"]["transcription"]["text"], "Guten Tag");

    // Without `words` or `transcripts`, an object without `type` is not an event.
    assert!(Event::from_slice(br#"{"text":"Guten Tag"}"#).is_err());
}

#[test]
fn the_signed_test_vector_verifies_and_parses() {
    let body = fixture("speech_to_text_test_vector.json");
    let scheme = ElevenLabs::new("test_secret").unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "elevenlabs-signature",
        HeaderValue::from_static(
            "t=1600000000,v0=14b663348e582d020752c7549318c2bcd4db22edeadf4336d667024ec8f72b0c",
        ),
    );
    let at = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    scheme.verify(&headers, &body, at).unwrap();

    let event = Event::from_slice(&body).unwrap();
    assert_eq!(
        event.event_timestamp().unwrap().unix_secs(),
        Some(1_600_000_000)
    );
    assert_eq!(event.event_id(), Some("req_123"));
    assert_eq!(single(&event).words(), &[]);
}

#[test]
fn the_documented_post_call_example_reads_as_written() {
    let body = fixture("post_call_transcription.json");
    let event = Event::from_slice(&body).unwrap();
    let Event::PostCallTranscription(call) = &event else {
        panic!("{}", event.event_type());
    };
    let data = &call.data;
    assert_eq!(event.event_id(), Some("abc"));
    assert_eq!(data.agent_id.as_deref(), Some("xyz"));
    assert_eq!(data.status.as_deref(), Some("done"));
    assert_eq!(
        (data.has_audio, data.has_user_audio, data.has_response_audio),
        (Some(true), Some(true), Some(false))
    );

    let turns = data.turns();
    assert_eq!(turns.len(), 3);
    let roles: Vec<_> = turns.iter().map(|t| t.role.clone().unwrap()).collect();
    assert_eq!(roles, [Role::Agent, Role::User, Role::Agent]);
    let times: Vec<_> = turns.iter().map(|t| t.time_in_call_secs.unwrap()).collect();
    assert_eq!(times, [0.0, 2.0, 9.0]);
    assert_eq!(
        turns[0].message.as_deref(),
        Some("Hey there angelo. How are you?")
    );
    assert_eq!((&turns[0].tool_calls, &turns[0].feedback), (&None, &None));
    let metrics = turns[2].conversation_turn_metrics.as_ref().unwrap();
    assert_eq!(
        metrics["convai_llm_service_ttfb"]["elapsed_time"],
        0.3704247010173276
    );

    let metadata = data.metadata.as_ref().unwrap();
    assert_eq!(metadata.start_time_unix_secs, Some(1_739_537_297));
    assert_eq!(metadata.call_duration_secs, Some(22.0));
    assert_eq!(metadata.cost, Some(296.0));
    assert_eq!(
        metadata.authorization_method.as_deref(),
        Some("authorization_header")
    );
    assert_eq!(metadata.termination_reason.as_deref(), Some(""));
    assert_eq!(
        metadata.deletion_settings.as_ref().unwrap()["delete_audio"],
        true
    );
    assert_eq!(metadata.charging.as_ref().unwrap()["dev_discount"], true);

    let analysis = data.analysis.as_ref().unwrap();
    assert_eq!(analysis.call_successful.as_deref(), Some("success"));
    assert!(analysis
        .evaluation_criteria_results
        .as_ref()
        .unwrap()
        .is_empty());
    assert!(analysis
        .transcript_summary
        .as_deref()
        .unwrap()
        .starts_with("The conversation begins"));

    let client = data.conversation_initiation_client_data.as_ref().unwrap();
    assert_eq!(
        client.dynamic_variables.as_ref().unwrap()["user_name"],
        "angelo"
    );
    assert_eq!(
        client.conversation_config_override.as_ref().unwrap()["agent"]["language"],
        "en"
    );
}

#[test]
fn tool_calls_results_and_a_string_timestamp() {
    let body = fixture("post_call_transcription_tools.json");
    let event = Event::from_slice(&body).unwrap();
    let timestamp = event.event_timestamp().unwrap();
    assert!(matches!(timestamp, Timestamp::Text(_)));
    assert_eq!(timestamp.unix_secs(), Some(1_739_537_297));
    let Event::PostCallTranscription(call) = &event else {
        panic!("{}", event.event_type());
    };
    let data = &call.data;
    assert_eq!(data.agent_name.as_deref(), Some("Booking desk"));
    assert_eq!(data.user_id.as_deref(), Some("user_42"));
    assert_eq!(data.branch_id.as_deref(), Some("main"));
    assert_eq!(data.version_id.as_deref(), Some("v7"));
    assert_eq!(data.environment.as_deref(), Some("production"));

    let turns = data.turns();
    assert_eq!(turns[0].time_in_call_secs, Some(4.5));
    assert_eq!(turns[1].message, None);
    let call_ = &turns[1].tool_calls.as_ref().unwrap()[0];
    assert_eq!(call_.kind.as_deref(), Some("webhook"));
    assert_eq!(call_.tool_name.as_deref(), Some("book_slot"));
    assert_eq!(call_.request_id.as_deref(), Some("call_1"));
    assert_eq!(call_.tool_has_been_called, Some(true));
    let params: Value = serde_json::from_str(call_.params_as_json.as_deref().unwrap()).unwrap();
    assert_eq!(params, json!({"day": "tuesday", "hour": 11}));
    assert_eq!(
        call_.tool_details.as_ref().unwrap()["url"],
        "https://example.com/book"
    );
    let result = &turns[1].tool_results.as_ref().unwrap()[0];
    assert_eq!(result.result_value.as_deref(), Some(r#"{"ok":true}"#));
    assert_eq!(result.is_error, Some(false));
    assert_eq!(result.extra["tool_latency_secs"], 0.31);
    assert_eq!(turns[2].extra["interrupted"], false);

    let metadata = data.metadata.as_ref().unwrap();
    // 1739537297.0: a float without a fraction is read as the integer.
    assert_eq!(metadata.start_time_unix_secs, Some(1_739_537_297));
    assert_eq!(metadata.call_duration_secs, Some(12.75));
    assert_eq!(metadata.cost, Some(41.5));
    assert_eq!(metadata.extra["phone_call"]["direction"], "inbound");

    let analysis = data.analysis.as_ref().unwrap();
    assert_eq!(
        analysis.evaluation_criteria_results.as_ref().unwrap()["booked"]["result"],
        "success"
    );
    let variables = data
        .conversation_initiation_client_data
        .as_ref()
        .unwrap()
        .dynamic_variables
        .as_ref()
        .unwrap();
    assert_eq!(
        (
            &variables["user_name"],
            &variables["vip"],
            &variables["visits"]
        ),
        (&json!("Ana"), &json!(true), &json!(3))
    );
}

#[test]
fn the_small_post_call_audio_decodes_to_its_bytes() {
    let body = fixture("post_call_audio.json");
    let expected = fixture("post_call_audio.bin");
    let event = Event::from_slice(&body).unwrap();
    let Event::PostCallAudio(audio) = &event else {
        panic!("{}", event.event_type());
    };
    assert_eq!(event.event_id(), Some("abc"));
    assert_eq!(audio.data.agent_id.as_deref(), Some("xyz"));
    let mp3 = audio.data.full_audio.as_ref().unwrap();
    assert!(mp3.is_borrowed());
    assert_eq!(mp3.decode().unwrap(), expected);
    let mut out = Vec::new();
    assert_eq!(mp3.decode_to(&mut out).unwrap(), expected.len() as u64);
    assert_eq!(out, expected);
    // Debug shows the length, not the text.
    let debug = format!("{mp3:?}");
    assert!(
        debug.contains("len: ") && !debug.contains(mp3.as_str()),
        "{debug}"
    );
}

#[test]
fn sip_and_twilio_failures_are_read_as_their_type_says() {
    let body = fixture("call_initiation_failure_sip.json");
    let event = Event::from_slice(&body).unwrap();
    let Event::CallInitiationFailure(failure) = &event else {
        panic!("{}", event.event_type());
    };
    assert_eq!(event.event_id(), Some("conv_sip"));
    assert_eq!(failure.data.failure_reason, Some(FailureReason::Busy));
    let metadata = failure.data.metadata.as_ref().unwrap();
    assert_eq!(metadata.kind.as_deref(), Some("sip"));
    let Some(FailureBody::Sip(sip)) = &metadata.body else {
        panic!("{:?}", metadata.body);
    };
    assert_eq!(sip.sip_status_code, Some(486));
    assert_eq!(sip.error_reason.as_deref(), Some("Busy Here"));
    assert_eq!(sip.from_number.as_deref(), Some("+14155550100"));
    assert_eq!(sip.to_number.as_deref(), Some("+14155550199"));
    assert_eq!(sip.call_sid.as_deref(), Some("sip_call_1"));
    assert_eq!(sip.extra["trunk_id"], "trunk_9");

    let body = fixture("call_initiation_failure_twilio.json");
    let event = Event::from_slice(&body).unwrap();
    let Event::CallInitiationFailure(failure) = &event else {
        panic!("{}", event.event_type());
    };
    assert_eq!(failure.data.failure_reason, Some(FailureReason::NoAnswer));
    assert_eq!(
        failure.data.failure_reason.as_ref().unwrap().as_str(),
        "no-answer"
    );
    let metadata = failure.data.metadata.as_ref().unwrap();
    let Some(FailureBody::Twilio(twilio)) = &metadata.body else {
        panic!("{:?}", metadata.body);
    };
    assert_eq!(twilio.call_sid.as_deref(), Some("CA1234567890abcdef"));
    assert_eq!(twilio.call_status.as_deref(), Some("no-answer"));
    assert_eq!(twilio.to.as_deref(), Some("+14155550199"));
    assert_eq!(twilio.from.as_deref(), Some("+14155550100"));
    assert_eq!(twilio.sip_response_code.as_deref(), Some("487"));
    assert_eq!(twilio.extra["Direction"], "outbound-api");

    // An undocumented reason and provider, and the body before the type: kept, still typed.
    let body = br#"{"type":"call_initiation_failure","data":{"failure_reason":"rejected",
        "metadata":{"body":{"from_number":"+1","sip_status_code":603},"type":"sip"}}}"#;
    let event = Event::from_slice(body).unwrap();
    let Event::CallInitiationFailure(failure) = &event else {
        panic!("{}", event.event_type());
    };
    assert_eq!(
        failure.data.failure_reason,
        Some(FailureReason::Other(Cow::Borrowed("rejected")))
    );
    let Some(FailureBody::Sip(sip)) = &failure.data.metadata.as_ref().unwrap().body else {
        panic!();
    };
    assert_eq!(sip.sip_status_code, Some(603));
    let body = br#"{"type":"call_initiation_failure","data":{"metadata":{"type":"vonage","body":{"status":"busy"}}}}"#;
    let event = Event::from_slice(body).unwrap();
    let Event::CallInitiationFailure(failure) = &event else {
        panic!();
    };
    let metadata = failure.data.metadata.as_ref().unwrap();
    assert_eq!(
        metadata.body,
        Some(FailureBody::Other(json!({"status": "busy"})))
    );
}

#[test]
fn voice_removal_events_keep_their_undocumented_data() {
    for (name, check) in [
        ("voice_removal_notice.json", 0),
        ("voice_removal_notice_withdrawn.json", 1),
        ("voice_removed.json", 2),
    ] {
        let body = fixture(name);
        let event = Event::from_slice(&body).unwrap();
        let data = match (&event, check) {
            (Event::VoiceRemovalNotice(e), 0)
            | (Event::VoiceRemovalNoticeWithdrawn(e), 1)
            | (Event::VoiceRemoved(e), 2) => &e.data,
            _ => panic!("{name}: {}", event.event_type()),
        };
        assert_eq!(data.voice_id(), Some("voice_21m00Tcm4TlvDq8ikWAM"));
        assert_eq!(data.extra["voice_name"], "Rachel");
        assert_eq!(data.extra["disable_at_unix"], 1_770_000_000);
        assert_eq!(event.event_id(), None);
    }
}

#[test]
fn an_unknown_type_is_kept_whole() {
    let body = fixture("unknown_type.json");
    let event = Event::from_slice(&body).unwrap();
    let Event::Unknown(unknown) = &event else {
        panic!("{}", event.event_type());
    };
    assert_eq!(unknown.event_type, "post_call_transcription_otel");
    assert_eq!(
        unknown.event_timestamp.as_ref().unwrap().unix_secs(),
        Some(1_739_539_000)
    );
    assert_eq!(
        unknown.data.as_ref().unwrap()["spans"][0]["duration_ms"],
        412
    );
    assert_eq!(unknown.extra["schema_version"], 2);
    assert_eq!(event.event_id(), Some("conv_otel"));
    let original: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(serde_json::to_value(&event).unwrap(), original);

    // Without data at all, still kept.
    let event = Event::from_slice(br#"{"type":"something_new"}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&event).unwrap(),
        r#"{"type":"something_new"}"#
    );
}

#[test]
fn unknown_and_mistyped_fields_survive_a_round_trip() {
    let body = fixture("unknown_fields.json");
    let event = Event::from_slice(&body).unwrap();
    let Event::SpeechToTextTranscription(envelope) = &event else {
        panic!("{}", event.event_type());
    };
    assert_eq!(envelope.extra["webhook_id"], "wh_1");
    assert_eq!(envelope.data.extra["model_id"], "scribe_v2");
    let transcript = single(&event);
    assert_eq!(transcript.extra["speaker_count"], 1);
    // "high" is not a number: the field is None, the value kept.
    assert_eq!(transcript.language_probability, None);
    assert_eq!(transcript.extra["language_probability"], "high");
    let word = &transcript.words()[0];
    assert_eq!(word.extra["confidence"], 0.93);
    assert_eq!(word.speaker_id, None);
    assert_eq!(word.extra["speaker_id"], 1);
    assert_eq!(word.logprob, Some(-0.1));
    let characters = word.characters.as_ref().unwrap();
    assert_eq!(characters[0].extra["phoneme"], "h");
    let entity = &transcript.entities.as_ref().unwrap()[0];
    assert_eq!(entity.start_char, Some(0));
    assert_eq!(entity.end_char, None);
    assert_eq!(entity.extra["end_char"], 2.5);

    let original: Value = serde_json::from_slice(&body).unwrap();
    let written = serde_json::to_value(&event).unwrap();
    assert_eq!(normalized(&written), normalized(&original));
    // The envelope's own fields are exact, numbers included.
    assert_eq!(written["event_timestamp"], original["event_timestamp"]);
    assert_eq!(
        written["data"]["transcription"]["entities"],
        json!([{"text": "Hi", "entity_type": "greeting", "start_char": 0, "end_char": 2.5}])
    );
}

#[test]
fn every_fixture_survives_a_round_trip() {
    for (name, _) in FIXTURES {
        if matches!(
            name,
            "speech_to_text_completed.json" | "speech_to_text_bare.json"
        ) {
            continue; // written back in the canonical form, tested above
        }
        let body = fixture(name);
        let event = Event::from_slice(&body).unwrap();
        let original: Value = serde_json::from_slice(&body).unwrap();
        let written = serde_json::to_value(&event).unwrap();
        assert_eq!(normalized(&written), normalized(&original), "{name}");
        // And parsing what was written gives the same event.
        let again = serde_json::to_vec(&event).unwrap();
        assert_eq!(Event::from_slice(&again).unwrap(), event, "{name}");
    }
}

#[test]
fn the_parsed_id_is_the_one_read_from_the_bytes() {
    for (name, _) in FIXTURES {
        let body = fixture(name);
        let event = Event::from_slice(&body).unwrap();
        assert_eq!(
            event.event_id().map(str::to_owned),
            event_id(&body),
            "{name}"
        );
    }
}

#[test]
fn data_before_type_is_read_typed_and_still_borrowed() {
    let body = fixture("data_before_type.json");
    let event = Event::from_slice(&body).unwrap();
    let Event::PostCallAudio(audio) = &event else {
        panic!("{}", event.event_type());
    };
    let mp3 = audio.data.full_audio.as_ref().unwrap();
    assert!(mp3.is_borrowed());
    assert_eq!(mp3.decode().unwrap(), fixture("post_call_audio.bin"));

    // The generic Deserialize holds the early data as a tree: same event, owned strings.
    let generic: Event<'_> = serde_json::from_slice(&body).unwrap();
    assert_eq!(generic, event);
    let Event::PostCallAudio(audio) = &generic else {
        panic!();
    };
    assert!(!audio.data.full_audio.as_ref().unwrap().is_borrowed());
}

#[test]
fn owned_events_outlive_their_body() {
    for (name, _) in FIXTURES {
        let body = fixture(name);
        let borrowed = Event::from_slice(&body).unwrap();
        let owned: Event<'static> = Event::from_slice(&body).unwrap().into_owned();
        let from_reader = Event::from_reader(&body[..]).unwrap();
        assert_eq!(owned, borrowed, "{name}");
        assert_eq!(from_reader, borrowed, "{name}");
        drop(body);
        std::thread::spawn(move || assert!(!owned.event_type().is_empty()))
            .join()
            .unwrap();
    }
}

#[test]
fn what_is_not_an_event_is_an_error() {
    for body in [
        &b""[..],
        b"not json",
        b"[]",
        b"42",
        b"\"speech_to_text_transcription\"",
        b"{}",
        br#"{"data":{"request_id":"r"}}"#,
        br#"{"type":null,"data":{}}"#,
        br#"{"type":42,"data":{}}"#,
        br#"{"type":"post_call_audio","data":{}} trailing"#,
        br#"{"type":"post_call_audio","data":{"full_audio":"abc}"#,
        b"\xff\xfe{}",
    ] {
        assert!(
            Event::from_slice(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn keys_are_matched_after_their_escapes_and_kept_only_when_utf8() {
    // `\u0074ext` is `text`, `d\u0061ta` is `data`.
    let body = br#"{"type":"speech_to_text_transcription","d\u0061ta":{"transcription":
        {"words":[{"\u0074ext":"Hi","type":"word","caf\u00e9":1}]}}}"#;
    let event = Event::from_slice(body).unwrap();
    let word = &single(&event).words()[0];
    assert_eq!(word.text.as_deref(), Some("Hi"));
    assert_eq!(word.extra["café"], 1);

    // A key that is not UTF-8 cannot be kept: an error, as serde_json's own.
    let mut body = br#"{"type":"x","data":{},"k?":1}"#.to_vec();
    let at = body.iter().position(|&b| b == b'?').unwrap();
    body[at] = 0xff;
    assert!(Event::from_slice(&body).is_err());
    assert!(serde_json::from_slice::<Value>(&body).is_err());
}

#[test]
fn a_data_of_another_json_type_is_kept_in_the_envelope() {
    let body = br#"{"type":"post_call_audio","event_timestamp":{"at":1},"data":"later"}"#;
    let event = Event::from_slice(body).unwrap();
    let Event::PostCallAudio(audio) = &event else {
        panic!();
    };
    assert_eq!(audio.data, Default::default());
    assert_eq!(audio.extra["data"], "later");
    assert_eq!(audio.event_timestamp, None);
    assert_eq!(audio.extra["event_timestamp"], json!({"at": 1}));
    let written = serde_json::to_string(&event).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&written).unwrap(),
        serde_json::from_slice::<Value>(body).unwrap()
    );
}

#[test]
fn the_generated_hour_holds_every_entry() {
    let generated = fixtures::hour_transcript(7);
    assert!(
        generated.body.len() > 4 << 20,
        "{} bytes",
        generated.body.len()
    );
    assert!(
        (9_000..12_000).contains(&generated.words),
        "{} words",
        generated.words
    );
    let event = Event::from_slice(&generated.body).unwrap();
    assert_eq!(event.event_id(), Some(generated.request_id.as_str()));
    let words = single(&event).words();
    let count = |kind: WordKind<'_>| {
        words
            .iter()
            .filter(|w| w.kind.as_ref() == Some(&kind))
            .count()
    };
    assert_eq!(count(WordKind::Word), generated.words);
    assert_eq!(count(WordKind::Spacing), generated.spacings);
    assert_eq!(count(WordKind::AudioEvent), generated.audio_events);
    let characters: usize = words
        .iter()
        .map(|w| w.characters.as_ref().unwrap().len())
        .sum();
    assert_eq!(characters, generated.characters);
    let last = words.last().unwrap();
    assert!((last.end.unwrap() - generated.last_end).abs() < 0.001);
    assert!(words.windows(2).all(|w| w[0].start <= w[1].start));
    // Every word but the one with quotes is borrowed from the body.
    let owned = words
        .iter()
        .filter(|w| matches!(w.text, Some(Cow::Owned(_))))
        .count();
    assert!(owned < words.len() / 50, "{owned} owned texts");
    assert!(words.iter().all(|w| w.extra.is_empty()));
    // The same seed gives the same bytes.
    assert_eq!(fixtures::hour_transcript(7).body, generated.body);
}

#[test]
fn the_generated_multichannel_transcript_holds_every_channel() {
    let generated = fixtures::multichannel_transcript(11, 3, 600.0);
    let event = Event::from_slice(&generated.body).unwrap();
    let transcription = stt(&event).transcription.as_ref().unwrap();
    assert!(matches!(transcription, Transcription::Multichannel(_)));
    let channels = transcription.transcripts();
    assert_eq!(channels.len(), generated.channels);
    let words: usize = channels
        .iter()
        .flat_map(|c| c.words())
        .filter(|w| w.kind == Some(WordKind::Word))
        .count();
    assert_eq!(words, generated.words);
    for (index, channel) in channels.iter().enumerate() {
        assert_eq!(channel.channel_index, Some(index as i64));
        assert!(channel
            .words()
            .iter()
            .all(|w| w.channel_index == Some(index as i64)));
    }
}

/// A writer that checks each piece against the expected bytes as it comes, and remembers the
/// largest piece: decoding into it never needs the decoded audio in memory.
struct Compare<'e> {
    expected: &'e [u8],
    at: usize,
    largest_write: usize,
}

impl Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.at + buf.len();
        assert!(end <= self.expected.len(), "more bytes than the original");
        assert!(
            buf == &self.expected[self.at..end],
            "differs at {}",
            self.at
        );
        self.at = end;
        self.largest_write = self.largest_write.max(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn megabytes_of_audio_decode_to_the_original_bytes_in_small_pieces() {
    let (body, audio) = fixtures::post_call_audio(3, 12 << 20);
    assert!(body.len() > 16 << 20);
    let event = Event::from_slice(&body).unwrap();
    let Event::PostCallAudio(envelope) = &event else {
        panic!();
    };
    let mp3 = envelope.data.full_audio.as_ref().unwrap();

    // The event holds the base64 once: it is the body's own bytes, not a copy.
    assert!(mp3.is_borrowed());
    let body_range = body.as_ptr_range();
    let text = mp3.as_str().as_bytes().as_ptr_range();
    assert!(body_range.start <= text.start && text.end <= body_range.end);
    assert_eq!(mp3.as_str().len(), (12 << 20) / 3 * 4);

    let mut compare = Compare {
        expected: &audio,
        at: 0,
        largest_write: 0,
    };
    assert_eq!(mp3.decode_to(&mut compare).unwrap(), audio.len() as u64);
    assert_eq!(compare.at, audio.len());
    assert!(
        compare.largest_write <= 48 << 10,
        "{}",
        compare.largest_write
    );

    let decoded = mp3.decode().unwrap();
    assert!(decoded == audio);
    assert!(mp3.decoded_len_estimate() >= decoded.len());
}

#[test]
fn escaped_wrapped_or_unpadded_base64_still_decodes() {
    let mut rng = fixtures::Rng::new(5);
    for len in [0, 1, 2, 3, 4, 100, 48 << 10, (48 << 10) + 1, 200_001] {
        let mut audio = vec![0; len];
        rng.fill(&mut audio);
        let standard = base64::engine::general_purpose::STANDARD.encode(&audio);

        // `\/` escapes: one owned copy, same bytes.
        let escaped = standard.replace('/', "\\/");
        let body = format!(r#"{{"type":"post_call_audio","data":{{"full_audio":"{escaped}"}}}}"#);
        let event = Event::from_slice(body.as_bytes()).unwrap();
        let Event::PostCallAudio(e) = &event else {
            panic!();
        };
        let mp3 = e.data.full_audio.as_ref().unwrap();
        assert_eq!(mp3.is_borrowed(), !standard.contains('/'), "{len}");
        assert!(mp3.decode().unwrap() == audio, "escaped, {len}");

        // MIME line breaks every 76 characters.
        let wrapped: Vec<&str> = standard
            .as_bytes()
            .chunks(76)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        let wrapped = Base64Audio::new(wrapped.join("\r\n"));
        let mut out = Vec::new();
        assert_eq!(wrapped.decode_to(&mut out).unwrap(), len as u64);
        assert!(out == audio, "wrapped, {len}");

        // No padding.
        let unpadded = Base64Audio::new(standard.trim_end_matches('='));
        assert!(unpadded.decode().unwrap() == audio, "unpadded, {len}");
    }
}

#[test]
fn invalid_base64_is_invalid_data() {
    let text = format!("{}*{}", "A".repeat(70_000), "A".repeat(100));
    let audio = Base64Audio::new(text.as_str());
    let error = audio.decode().unwrap_err();
    assert_eq!(error.offset(), 70_000);
    let mut written = Vec::new();
    let error = audio.decode_to(&mut written).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    // The first chunk was good and written before the bad one was found.
    assert_eq!(written.len(), (64 << 10) / 4 * 3);
    for bad in ["A", "AAAAA", "A===", "AA=A", "Zm9v YmFy!"] {
        assert!(Base64Audio::new(bad).decode().is_err(), "{bad}");
    }
}

/// Any JSON value, shallow enough to stay within serde_json's nesting limit.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Floats that print and parse back exactly.
        (-1_000_000_i64..1_000_000).prop_map(|n| Value::from(n as f64 / 1000.0)),
        "[a-z_ é\"\\\\]{0,12}".prop_map(Value::String),
        key().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Field names the typed structs know, so random objects reach deep into them, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "type", "event_timestamp", "data", "request_id", "transcription", "webhook_metadata",
            "transcripts", "words", "text", "start", "end", "speaker_id", "logprob", "characters",
            "channel_index", "additional_formats", "entities", "start_char", "content",
            "is_base64_encoded", "language_code", "language_probability", "transcript", "role",
            "message", "tool_calls", "tool_results", "time_in_call_secs", "metadata", "analysis",
            "conversation_initiation_client_data", "has_audio", "full_audio", "failure_reason",
            "body", "sip_status_code", "CallSid", "start_time_unix_secs", "dynamic_variables",
            "conversation_id",
        ]).prop_map(str::to_owned),
        1 => "[a-z]{1,8}",
    ]
}

const TYPES: [&str; 10] = [
    "speech_to_text_transcription",
    "speech_to_text.completed",
    "post_call_transcription",
    "post_call_audio",
    "call_initiation_failure",
    "voice_removal_notice",
    "voice_removal_notice_withdrawn",
    "voice_removed",
    "post_call_transcription_otel",
    "",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes: an error or an event, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Event::from_slice(&bytes);
    }

    /// Arbitrary JSON, in an envelope of any type or none: never a panic; with a string `type`,
    /// never an error; and what is written back parses to the same event.
    #[test]
    fn any_object_with_a_type_is_an_event(
        event_type in prop::sample::select(TYPES.to_vec()),
        data in json_value(),
        timestamp in json_value(),
        extra in prop::collection::vec((key(), json_value()), 0..3),
        data_first in any::<bool>(),
    ) {
        let mut fields: Vec<(String, Value)> = extra;
        fields.retain(|(k, _)| !matches!(k.as_str(), "type" | "data" | "event_timestamp"));
        let typed = [
            ("type".to_owned(), Value::from(event_type)),
            ("event_timestamp".to_owned(), timestamp),
            ("data".to_owned(), data),
        ];
        if data_first {
            fields.extend(typed.into_iter().rev());
        } else {
            fields.splice(0..0, typed);
        }
        // Written by hand to keep the order.
        let body = format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
                .collect::<Vec<_>>()
                .join(",")
        );
        let event = Event::from_slice(body.as_bytes());
        let event = match event {
            Ok(event) => event,
            Err(e) => return Err(TestCaseError::fail(format!("{e}: {body}"))),
        };
        // Whenever the bytes give an id, the typed event gives the same. (Only for an object
        // `data`: `event_id`'s derived reader also takes an array as the fields in order.)
        let data_is_object = fields.iter().any(|(k, v)| k == "data" && v.is_object());
        if let (true, Some(id)) = (data_is_object, event_id(body.as_bytes())) {
            prop_assert_eq!(event.event_id(), Some(id.as_str()), "{}", body);
        }
        let written = serde_json::to_vec(&event).unwrap();
        prop_assert_eq!(&Event::from_slice(&written).unwrap(), &event, "{}", body);
        let generic: Event<'_> = serde_json::from_slice(body.as_bytes()).unwrap();
        prop_assert_eq!(&generic, &event);
    }

    /// Arbitrary JSON at the top: never a panic.
    #[test]
    fn any_json_never_panics(value in json_value()) {
        let _ = Event::from_slice(value.to_string().as_bytes());
    }

    /// The fixtures, with bytes changed here and there: never a panic.
    #[test]
    fn mutated_fixtures_never_panic(
        index in 0..FIXTURES.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut body = fixture(FIXTURES[index].0);
        for (at, byte) in edits {
            let at = at.index(body.len());
            body[at] = byte;
        }
        if let Ok(event) = Event::from_slice(&body) {
            let written = serde_json::to_vec(&event).unwrap();
            prop_assert!(Event::from_slice(&written).is_ok());
        }
    }
}
