//! `voice_removal_notice`, `voice_removal_notice_withdrawn`, `voice_removed`: a shared voice
//! from the Voice Library that is scheduled to be removed, no longer scheduled, or removed.

use serde_json::Value;

use super::lenient::lenient_struct;

lenient_struct! {
    /// The `data` of the three voice removal events. ElevenLabs documents the events (a shared
    /// voice saved to "My Voices" whose owner stops sharing it: a notice period of up to two
    /// years starts, may be withdrawn, and ends with the voice removed) but not their `data`,
    /// so every field is kept as received, in `extra`.
    pub struct VoiceRemoval {}
}

impl VoiceRemoval {
    /// The `voice_id` string, if the delivery has one (as ElevenLabs' voice APIs name a voice;
    /// not documented for these events).
    #[must_use]
    pub fn voice_id(&self) -> Option<&str> {
        self.extra.get("voice_id").and_then(Value::as_str)
    }
}
