/* Voice search for the search box (_voice_button.html).
 *
 * 1. Where the browser recognises speech (SpeechRecognition / webkitSpeechRecognition), the words
 *    heard fill the search box and the form is submitted.
 * 2. Otherwise (or when that service fails, e.g. offline), the microphone is recorded through an
 *    AudioContext, encoded as a 16-bit mono WAV here, and posted to the server's fallback
 *    (POST /search/voice/), which transcribes it offline and redirects to the results.
 * The button stays hidden when neither is possible.
 */
(function () {
  "use strict";

  var Recognition = window.SpeechRecognition || window.webkitSpeechRecognition;
  var AudioCtx = window.AudioContext || window.webkitAudioContext;
  var canRecord = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && AudioCtx && window.fetch);

  function encodeWav(chunks, sampleRate) {
    var length = 0;
    chunks.forEach(function (chunk) { length += chunk.length; });
    var buffer = new ArrayBuffer(44 + length * 2);
    var view = new DataView(buffer);
    function text(offset, value) {
      for (var i = 0; i < value.length; i++) view.setUint8(offset + i, value.charCodeAt(i));
    }
    text(0, "RIFF");
    view.setUint32(4, 36 + length * 2, true);
    text(8, "WAVE");
    text(12, "fmt ");
    view.setUint32(16, 16, true);          // fmt chunk size
    view.setUint16(20, 1, true);           // PCM
    view.setUint16(22, 1, true);           // mono
    view.setUint32(24, sampleRate, true);
    view.setUint32(28, sampleRate * 2, true);  // bytes per second
    view.setUint16(32, 2, true);           // bytes per frame
    view.setUint16(34, 16, true);          // bits per sample
    text(36, "data");
    view.setUint32(40, length * 2, true);
    var offset = 44;
    chunks.forEach(function (chunk) {
      for (var i = 0; i < chunk.length; i++, offset += 2) {
        var s = Math.max(-1, Math.min(1, chunk[i]));
        view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
      }
    });
    return new Blob([view], { type: "audio/wav" });
  }

  function setUp(button) {
    var form = button.closest("form") || document.querySelector("[data-mm-search-box]");
    var input = form && form.querySelector("input[name=q]");
    var status = (button.parentNode && button.parentNode.querySelector("[data-mm-voice-status]")) || null;
    if (!form || !input || !(Recognition || canRecord)) return;
    var maxSeconds = parseFloat(button.getAttribute("data-mm-voice-max")) || 15;
    var busy = false;
    var stopRecording = null;
    var useServer = !Recognition;

    function say(message) { if (status) status.textContent = message; }
    function pressed(on) { busy = on; button.setAttribute("aria-pressed", on ? "true" : "false"); }
    function submit() {
      if (form.requestSubmit) form.requestSubmit(); else form.submit();
    }

    function recognise() {
      var recognition = new Recognition();
      recognition.lang = document.documentElement.lang || "en-US";
      recognition.interimResults = true;
      recognition.maxAlternatives = 1;
      var heard = "";
      recognition.onresult = function (event) {
        var words = "";
        var final = false;
        for (var i = 0; i < event.results.length; i++) {
          words += event.results[i][0].transcript;
          final = final || event.results[i].isFinal;
        }
        input.value = heard = words.trim();
        if (final && heard) recognition.stop();
      };
      recognition.onerror = function (event) {
        pressed(false);
        // no recognition service (offline, blocked): record for the server instead, on the next press
        if (canRecord && (event.error === "network" || event.error === "service-not-allowed")) {
          useServer = true;
          say("Speech recognition is unavailable here; press the microphone again to record instead.");
        } else if (event.error === "not-allowed") {
          say("The microphone is blocked for this site.");
        } else if (event.error !== "aborted") {
          say("Nothing was heard. Try again or type your search.");
        }
      };
      recognition.onend = function () {
        var wasBusy = busy;
        pressed(false);
        if (wasBusy && heard) { say("Searching for " + heard); submit(); }
      };
      pressed(true);
      say("Listening… say what you are looking for.");
      stopRecording = function () { recognition.stop(); };
      recognition.start();
    }

    function record() {
      navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
        var context = new AudioCtx();
        var source = context.createMediaStreamSource(stream);
        var processor = context.createScriptProcessor(4096, 1, 1);
        var chunks = [];
        var started = Date.now();
        var lastSound = 0;
        processor.onaudioprocess = function (event) {
          var samples = new Float32Array(event.inputBuffer.getChannelData(0));
          chunks.push(samples);
          var energy = 0;
          for (var i = 0; i < samples.length; i++) energy += samples[i] * samples[i];
          var now = Date.now();
          if (Math.sqrt(energy / samples.length) > 0.02) lastSound = now;
          // stop after 1.5 s of quiet following speech, or just before the server's length limit
          if ((lastSound && now - lastSound > 1500) || now - started > (maxSeconds - 0.5) * 1000) finish();
        };
        source.connect(processor);
        processor.connect(context.destination);
        var done = false;
        function finish() {
          if (done) return;
          done = true;
          processor.disconnect();
          source.disconnect();
          stream.getTracks().forEach(function (track) { track.stop(); });
          var wav = encodeWav(chunks, context.sampleRate);
          context.close();
          pressed(false);
          say("Recognising…");
          upload(wav);
        }
        stopRecording = finish;
        pressed(true);
        say("Recording… say what you are looking for, then press the microphone again.");
      }).catch(function () {
        pressed(false);
        say("The microphone is blocked or missing.");
      });
    }

    function upload(wav) {
      var body = new FormData();
      body.append("audio", wav, "voice.wav");
      var csrf = button.getAttribute("data-mm-csrf") || "";
      var field = form.querySelector("input[name=csrfmiddlewaretoken]");
      if (!csrf && field) csrf = field.value;
      fetch(button.getAttribute("data-mm-voice-url"), {
        method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRFToken": csrf }
      }).then(function (response) {
        if (response.ok && response.redirected) { window.location.assign(response.url); return; }
        return response.text().then(function (message) {
          say(message || "The recording could not be recognised; type your search instead.");
        });
      }).catch(function () { say("The recording could not be sent; type your search instead."); });
    }

    button.hidden = false;
    button.addEventListener("click", function () {
      if (busy) { if (stopRecording) stopRecording(); return; }
      if (useServer) record(); else recognise();
    });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-mm-voice]"), setUp);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
