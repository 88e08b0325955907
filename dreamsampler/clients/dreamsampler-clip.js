// dreamsampler-clip.js: the Max for Live device's logic (Live API and endpoints).
//
// Embedded in dreamsampler.amxd by 'dreamsampler patches' (a [v8] box whose code is saved in the
// device: "textfile" with "embed" 1), so the device is one file. Plain ES5, so that it also runs
// in Max's older [js]; the node tests load it from the .amxd bytes with a fake Live Object Model.
//
// Messages (inlet 0):
//   host <h>, serverport <p>  the Host and Port fields (each calls endpoint)
//   endpoint <host> <port>  the server's address (the device's Host and Port fields, saved with
//                           the Set); unregisters from the old server, then registers again
//   start                   at load: claims a reply port no other copy in this Max holds, binds
//                           [udpreceive] to it and registers it with "/notify 1 <port>"
//   tick                    periodic: "/notify 1 <port>" again (re-registers after a server
//                           restart; the server's registrations expire when a client goes quiet)
//   mode session|arrangement  where clips go (Arrangement: at the playhead, Live 12.2+)
//   place <path>            place a delivered clip on the device's own track
//   done <address> <id> <path...>  a /done reply: several WAV paths are takes (listed in the
//                           Takes menu; the first is placed by "place"); /separate's folder, or
//                           a folder right after the clip (the stems option), is stems; sink/error
//                           pairs after them are ignored
//   take <index>            place take <index> of the last job and load it for preview
//   capture <bars> <command> [folder]  record <bars> of the track's input, then run <command>
//   captured                the recording is complete (from the patch's [delay])
//   cookie <c>              a /notify.cookie reply: answered "/notify 1 <port> <c>"
//   notifydeleted           (Max calls it when the device is deleted) frees the reply port
// Outlets: 0 status line ("set <words>"), 1 network ("send <osc message>" to [udpsend],
// "send host|port ..." to [udpsend], "receive port <n>" to [udpreceive]), 2 takes menu,
// 3 clip ("replace <path>" for the preview buffer, "input <path>" as the next job's input,
// "channels 1|2" for the preview's right side),
// 4 capture ("size <ms>", "record 1", "wait <ms>", "write <path>", "press <command>").

autowatch = 0;
inlets = 1;
outlets = 5;

var MIN_VERSION = [12, 0, 5];
var ARRANGEMENT_VERSION = [12, 2, 0];
var REPLY_BASE = 47001;
var REPLY_SPAN = 999;

var state = {
    host: "127.0.0.1",
    port: 9000,
    replyPort: 0,
    registered: false,
    mode: "session",
    takes: [],
    captureSeq: 0,
    capturePath: "",
    captureCommand: "",
    outputDir: ""
};

function lastNumber(value) {
    // LiveAPI get() answers arrays ([1]); call() a value or an array ending in it
    if (value instanceof Array) {
        return Number(value[value.length - 1]);
    }
    return Number(value);
}

function text(value) {
    return value instanceof Array ? value.join(" ") : String(value);
}

function baseName(path) {
    var parts = String(path).split(/[\/\\]/);
    return parts[parts.length - 1];
}

function stem(name) {
    return String(name).replace(/\.[^.]*$/, "");
}

function liveVersion(api) {
    var app = api("live_app");
    return [lastNumber(app.call("get_major_version")),
            lastNumber(app.call("get_minor_version")),
            lastNumber(app.call("get_bugfix_version"))];
}

function olderThan(version, minimum) {
    for (var i = 0; i < minimum.length; i++) {
        if (version[i] !== minimum[i]) {
            return version[i] < minimum[i];
        }
    }
    return false;
}

function pathOf(object) {
    return String(object.unquotedpath !== undefined ? object.unquotedpath : object.path)
        .replace(/"/g, "");
}

// The track holding the device: its canonical parent, or (inside a rack, where the parent is
// a chain) the "live_set tracks N" at the start of the device's own path.
function ownTrack(api) {
    var parent = api("this_device canonical_parent");
    var path = pathOf(parent);
    if (/^live_set (tracks|return_tracks) \d+$|^live_set master_track$/.test(path)) {
        return parent;
    }
    var match = /^live_set (tracks|return_tracks) \d+|^live_set master_track/.exec(
        pathOf(api("this_device")));
    return match ? api(match[0]) : null;
}

function sceneIndex(api) {
    var match = /scenes (\d+)/.exec(pathOf(api("live_set view selected_scene")));
    return match ? Number(match[1]) : 0;
}

// Why ``track`` cannot hold an audio clip, or null when it can.
function refusal(track, name) {
    if (track === null || Number(track.id) === 0) {
        return "not placed: the device is not on a track; " + name + " is in the output folder";
    }
    if (!/^live_set tracks \d+$/.test(pathOf(track))) {
        return "not placed: return and master tracks hold no clips; put dreamsampler on an " +
            "audio track (" + name + " is in the output folder)";
    }
    var trackName = text(track.get("name"));
    if (lastNumber(track.get("is_foldable")) === 1) {
        return "not placed: '" + trackName + "' is a group track; put dreamsampler on an " +
            "audio track";
    }
    if (lastNumber(track.get("has_audio_input")) !== 1) {
        return "not placed: '" + trackName + "' is a MIDI track; put dreamsampler on an " +
            "audio track";
    }
    if (lastNumber(track.get("is_frozen")) === 1) {
        return "not placed: '" + trackName + "' is frozen; unfreeze it";
    }
    return null;
}

// Session View: the selected scene's slot of ``track``, or the next empty one below.
function placeInSession(api, track, path, first) {
    var name = baseName(path);
    var trackPath = pathOf(track);
    var trackName = text(track.get("name"));
    var count = track.getcount("clip_slots");
    for (var i = first; i < count; i++) {
        var slot = api(trackPath + " clip_slots " + i);
        if (lastNumber(slot.get("has_clip")) === 0) {
            slot.call("create_audio_clip", String(path));
            if (lastNumber(slot.get("has_clip")) !== 1) {
                return "not placed: Live refused " + name + " in '" + trackName + "' scene " +
                    (i + 1) + " (see the Max window)";
            }
            return "placed " + name + " in '" + trackName + "' scene " + (i + 1);
        }
    }
    return "not placed: no empty clip slot in '" + trackName + "' from scene " + (first + 1) +
        " down; add a scene or clear a slot (" + name + " is in the output folder)";
}

// Arrangement View: Track.create_audio_clip(file_path, position) at the playhead
// (Song.current_song_time, in beats).
function placeInArrangement(api, track, path) {
    var name = baseName(path);
    var trackName = text(track.get("name"));
    var beats = lastNumber(api("live_set").get("current_song_time"));
    var before = track.getcount("arrangement_clips");
    track.call("create_audio_clip", String(path), beats);
    if (track.getcount("arrangement_clips") <= before) {
        return "not placed: Live refused " + name + " in '" + trackName + "' at beat " + beats +
            " (see the Max window)";
    }
    return "placed " + name + " in '" + trackName + "' arrangement at beat " + beats;
}

// Place the clip at ``path``; ``api(path)`` makes a LiveAPI object. Returns the status text.
function placeClip(api, path, mode) {
    var name = baseName(path);
    var version = liveVersion(api);
    if (olderThan(version, MIN_VERSION)) {
        return "not placed: Live " + version.join(".") + " cannot create clips (12.0.5 or " +
            "later can); " + name + " is in the server's output folder";
    }
    var track = ownTrack(api);
    var why = refusal(track, name);
    if (why !== null) {
        return why;
    }
    if (mode === "arrangement") {
        if (olderThan(version, ARRANGEMENT_VERSION)) {
            return "not placed: Live " + version.join(".") + " cannot create Arrangement " +
                "clips (12.2 or later can); choose Session (" + name + " is in the output folder)";
        }
        return placeInArrangement(api, track, path);
    }
    return placeInSession(api, track, path, sceneIndex(api));
}

// Stems: one new audio track per file of ``files`` right after the device's track, named
// "<source> <stem>", each stem in the selected scene's slot. Live's API cannot create group
// tracks (Song has create_audio_track, create_midi_track, create_return_track, not a group).
function placeStems(api, folder, files) {
    var version = liveVersion(api);
    if (olderThan(version, MIN_VERSION)) {
        return "not placed: Live " + version.join(".") + " cannot create clips (12.0.5 or " +
            "later can); the stems are in " + folder;
    }
    var track = ownTrack(api);
    var match = /^live_set tracks (\d+)$/.exec(track === null ? "" : pathOf(track));
    if (match === null) {
        return "not placed: put dreamsampler on an audio track; the stems are in " + folder;
    }
    var source = baseName(String(folder).replace(/[\/\\]+$/, ""));
    var scene = sceneIndex(api);
    var song = api("live_set");
    var at = Number(match[1]) + 1;
    var placed = [];
    for (var i = 0; i < files.length; i++) {
        song.call("create_audio_track", at + i);
        var created = api("live_set tracks " + (at + i));
        created.set("name", source + " " + stem(baseName(files[i])));
        var outcome = placeInSession(api, created, files[i], scene);
        if (outcome.indexOf("placed ") !== 0) {
            return outcome;
        }
        placed.push(stem(baseName(files[i])));
    }
    return "placed stems " + placed.join(", ") + " of " + source + " on new tracks " +
        (at + 1) + "-" + (at + files.length);
}

// -- endpoints ------------------------------------------------------------------------------

// The ports claimed by the copies of the device in this Max (a Global is shared by all of
// them; its property holds plain text, "port=owner" pairs joined by ";", since Max converts
// what crosses between [js]/[v8] instances): each copy takes the lowest free one from
// REPLY_BASE.
function readClaims(registry) {
    var claims = {};
    var text = registry.claims === undefined ? "" : String(registry.claims);
    var pairs = text === "" ? [] : text.split(";");
    for (var i = 0; i < pairs.length; i++) {
        var cut = pairs[i].indexOf("=");
        claims[pairs[i].slice(0, cut)] = pairs[i].slice(cut + 1);
    }
    return claims;
}

function writeClaims(registry, claims) {
    var pairs = [];
    for (var port in claims) {
        pairs.push(port + "=" + claims[port]);
    }
    registry.claims = pairs.join(";");
}

function claimPort(registry, owner) {
    var claims = readClaims(registry);
    for (var port in claims) {
        if (claims[port] === owner) {
            return Number(port);
        }
    }
    for (var i = 0; i < REPLY_SPAN; i++) {
        var candidate = String(REPLY_BASE + i);
        if (claims[candidate] === undefined) {
            claims[candidate] = owner;
            writeClaims(registry, claims);
            return Number(candidate);
        }
    }
    return 0;
}

function releasePort(registry, owner) {
    var claims = readClaims(registry);
    for (var port in claims) {
        if (claims[port] === owner) {
            delete claims[port];
        }
    }
    writeClaims(registry, claims);
}

var registryObject = null;
var ownerId = "dreamsampler-" + Math.random();

function registry() {
    if (registryObject === null) {
        registryObject = new Global("dreamsampler_reply_ports");
    }
    return registryObject;
}

function register() {
    if (state.replyPort > 0) {
        outlet(1, ["send", "/notify", 1, state.replyPort]);
        state.registered = true;
    }
}

// "/notify.cookie <c>" from the server: echo it, so that a server on another machine starts
// streaming /progress here (issue 22; a server on this machine needs no echo)
function cookie(value) {
    if (state.replyPort) {
        outlet(1, ["send", "/notify", 1, state.replyPort, Number(value)]);
    }
}

function status(words) {
    outlet(0, ["set"].concat(String(words).split(" ")));
}

function start() {
    state.replyPort = claimPort(registry(), ownerId);
    if (state.replyPort === 0) {
        status("no free reply port between " + REPLY_BASE + " and " + (REPLY_BASE + REPLY_SPAN));
        return;
    }
    outlet(1, ["receive", "port", state.replyPort]);
    register();
    outlet(1, ["send", "/status"]);  // its reply names the output folder (for captures)
    status("server " + state.host + ":" + state.port + ", replies on port " + state.replyPort);
}

function endpoint(host, port) {
    var newHost = String(host === undefined || host === "" ? state.host : host);
    var newPort = Number(port === undefined ? state.port : port);
    if (!(newPort >= 1 && newPort <= 65535)) {
        status("port " + port + " is not a UDP port (1-65535)");
        return;
    }
    if (newHost === state.host && newPort === state.port) {
        return;
    }
    if (state.registered) {
        outlet(1, ["send", "/notify", 0]);  // the old server stops sending here
    }
    state.host = newHost;
    state.port = newPort;
    outlet(1, ["send", "host", state.host]);
    outlet(1, ["send", "port", state.port]);
    register();
    status("server " + state.host + ":" + state.port + ", replies on port " + state.replyPort);
}

function host() {
    endpoint(arrayfromargs(arguments).join(" "), state.port);
}

function serverport(port) {
    endpoint(state.host, port);
}

function tick() {
    register();
}

function notifydeleted() {
    if (state.registered) {
        outlet(1, ["send", "/notify", 0]);
    }
    releasePort(registry(), ownerId);
}

function mode(value) {
    state.mode = String(value).toLowerCase() === "arrangement" ? "arrangement" : "session";
}

// "outputdir <index> <the /status.reply arguments>": the output folder is argument <index>
function outputdir() {
    var args = arrayfromargs(arguments);
    var value = args[Number(args[0]) + 1];
    state.outputDir = value === undefined ? "" : String(value);
}

// -- replies --------------------------------------------------------------------------------

function makeLiveAPI(path) {
    return new LiveAPI(path);
}

function report(textValue) {
    post("dreamsampler: " + textValue + "\n");
    status(textValue);
}

// The channel count of a WAV file (its "fmt " chunk), read with Max's File object; 2 when the
// file is not a readable WAV. The preview plays a mono clip on both sides with it (play~ outputs
// zeros on channels a buffer~ lacks).
function wavChannels(path) {
    var f = new File(path, "read");
    if (!f.isopen) {
        return 2;
    }
    var head = f.readbytes(512) || [];
    f.close();
    var tag = function (at) {
        return String.fromCharCode(head[at], head[at + 1], head[at + 2], head[at + 3]);
    };
    if (head.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") {
        return 2;
    }
    var at = 12;
    while (at + 8 <= head.length) {
        var size = head[at + 4] | (head[at + 5] << 8) | (head[at + 6] << 16) | (head[at + 7] << 24);
        if (tag(at) === "fmt " && at + 12 <= head.length) {
            return head[at + 10] | (head[at + 11] << 8);
        }
        at += 8 + size + (size % 2);
    }
    return 2;
}

function preview(path) {
    outlet(3, ["channels", Math.max(1, Math.min(2, wavChannels(path)))]);
}

function place() {
    var path = arrayfromargs(arguments).join(" ");
    var outcome;
    try {
        preview(path);
    } catch (error) {
        post("dreamsampler: " + error + "\n");
    }
    try {
        outcome = placeClip(makeLiveAPI, path, state.mode);
    } catch (error) {
        outcome = "not placed: " + error;
    }
    report(outcome);
}

function listFolder(folder) {
    var found = [];
    var f = new Folder(folder);
    f.typelist = ["WAVE", "AIFF", "FLAC"];
    while (!f.end) {
        if (f.filename && /\.(wav|aif|aiff|flac)$/i.test(f.filename)) {
            found.push(String(folder).replace(/[\/\\]+$/, "") + "/" + f.filename);
        }
        f.next();
    }
    f.close();
    found.sort();
    return found;
}

function done() {
    var args = arrayfromargs(arguments);
    var address = String(args[0]);
    var paths = args.slice(2).map(String);
    if (address === "/separate" && paths.length > 0) {
        var outcome;
        try {
            outcome = placeStems(makeLiveAPI, paths[0], listFolder(paths[0]));
        } catch (error) {
            outcome = "not placed: " + error;
        }
        report(outcome);
        return;
    }
    // /done <address> <id> <path> [<stems folder>] [<sink> <error>]...: a stems folder (issue
    // 19's stems option) is a path right after the clip that is not a WAV; sink/error pairs are
    // words, not paths. Several WAV paths are takes.
    var folder = paths.length > 1 && isPath(paths[1]) && !isWav(paths[1]) ? paths[1] : "";
    if (folder !== "") {
        var placed;
        try {
            placed = placeStems(makeLiveAPI, folder, listFolder(folder));
        } catch (failure) {
            placed = "not placed: " + failure;
        }
        report(placed);
    }
    var wavs = paths.filter(isWav);
    if (wavs.length > 1) {
        paths = wavs;
        state.takes = paths;
        var names = [];
        for (var i = 0; i < paths.length; i++) {
            names.push("take" + (i + 1));
        }
        outlet(2, ["_parameter_range"].concat(names));
        outlet(2, ["set", 0]);
    }
}

function isWav(item) {
    return /\.wav$/i.test(String(item));
}

function isPath(item) {
    return /[\/\\]/.test(String(item));
}

function take(index) {
    var i = Number(index);
    if (!(i >= 0 && i < state.takes.length)) {
        status("no take " + (i + 1) + " (" + state.takes.length + " takes)");
        return;
    }
    outlet(3, ["replace", state.takes[i]]);
    outlet(3, ["input", state.takes[i]]);
    place(state.takes[i]);  // sets the preview's channels too
}

// -- capture --------------------------------------------------------------------------------

function captureMs(api, bars) {
    var song = api("live_set");
    var tempo = lastNumber(song.get("tempo"));
    var numerator = lastNumber(song.get("signature_numerator"));
    var denominator = lastNumber(song.get("signature_denominator"));
    return Math.round(bars * numerator * (4 / denominator) * 60000 / tempo);
}

function capture(bars, command, folder) {
    var where = folder === undefined ? state.outputDir : String(folder);
    if (where === "") {
        status("capture: no folder yet (the server's output folder comes with /status.reply)");
        return;
    }
    var ms = captureMs(makeLiveAPI, Number(bars));
    state.captureSeq += 1;
    state.capturePath = where.replace(/[\/\\]+$/, "") + "/capture-" + state.replyPort + "-" +
        state.captureSeq + ".wav";
    state.captureCommand = String(command);
    outlet(4, ["size", ms]);
    outlet(4, ["record", 1]);
    outlet(4, ["wait", ms]);
    status("recording " + bars + " bars (" + (ms / 1000).toFixed(1) + " s) for " + command);
}

function captured() {
    if (state.capturePath === "") {
        return;
    }
    outlet(4, ["write", state.capturePath]);
    outlet(3, ["input", state.capturePath]);
    outlet(4, ["press", state.captureCommand]);
    state.capturePath = "";
}

if (typeof module !== "undefined" && module.exports) {
    module.exports = {
        placeClip: placeClip, placeStems: placeStems, place: place, start: start,
        endpoint: endpoint, host: host, serverport: serverport, tick: tick, cookie: cookie,
        notifydeleted: notifydeleted, mode: mode, done: done,
        take: take, capture: capture, captured: captured, outputdir: outputdir,
        claimPort: claimPort, captureMs: captureMs, state: state
    };
}
