// dreamsampler-clip.js: puts a delivered clip into Live's Session View (Max for Live [js]).
//
// Generated next to dreamsampler.amxd by 'dreamsampler patches'; keep the two files in one
// folder. The device sends "place <absolute path of the WAV>" when the server delivers a clip; the
// clip goes onto the device's own track (this_device canonical_parent), into the clip slot of the
// selected scene or, when that slot holds a clip, the next empty slot below it, through
// ClipSlot.create_audio_clip (Live 12.0.5 or later). The one-line outcome leaves outlet 0 as
// "set <words>" for the device's status line; nothing is only printed to the Max window.
//
// Plain ES5 (Max's [js]); the node tests load it with a fake Live Object Model.

autowatch = 0;
inlets = 1;
outlets = 1;

var MIN_VERSION = [12, 0, 5];

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

// Place the clip at ``path``; ``api(path)`` makes a LiveAPI object. Returns the status text.
function placeClip(api, path) {
    var name = baseName(path);
    var version = liveVersion(api);
    if (olderThan(version, MIN_VERSION)) {
        return "not placed: Live " + version.join(".") + " cannot create clips (12.0.5 or " +
            "later can); " + name + " is in the server's output folder";
    }
    var track = ownTrack(api);
    if (track === null || Number(track.id) === 0) {
        return "not placed: the device is not on a track; " + name + " is in the output folder";
    }
    var trackPath = pathOf(track);
    if (!/^live_set tracks \d+$/.test(trackPath)) {
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
    var first = sceneIndex(api);
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

function makeLiveAPI(path) {
    return new LiveAPI(path);
}

function place() {
    var path = arrayfromargs(arguments).join(" ");
    var text;
    try {
        text = placeClip(makeLiveAPI, path);
    } catch (error) {
        text = "not placed: " + error;
    }
    post("dreamsampler: " + text + "\n");
    outlet(0, ["set"].concat(text.split(" ")));  // words, as the other status lines
}

if (typeof module !== "undefined" && module.exports) {
    module.exports = { placeClip: placeClip, place: place };
}
