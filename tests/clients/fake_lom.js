// Runs the script embedded in max_patches/dreamsampler.amxd under node against a small fake
// Live Object Model.
//
// Live cannot run on the test machines, so this fake stands in for Max's LiveAPI, Global,
// Folder, File (over node's fs), outlet and post (a justified mock). The script is taken from the .amxd bytes alone:
// the ptch chunk's patcher JSON, the [v8] box's embedded "textfile" text. Each copy of the device
// runs the script in its own context (as each [v8] has its own), sharing one Global store as
// copies in one Max do. Objects are looked up by canonical path in a scenario read from stdin;
// get() answers arrays as Max does, path is quoted as in Max; ClipSlot.create_audio_clip fills
// the slot unless the scenario says Live refuses; Track.create_audio_clip adds an Arrangement
// clip; Song.create_audio_track inserts a track (later tracks move down by one).
//
// Usage: node fake_lom.js <device.amxd> < scenario
// scenario: {version, objects, this_device (per copy: list or one), parent, selected_scene,
//            copies, messages: [[copy, name, args...], ...]}
// Prints {outlets: [[copy, outlet, atoms...]], calls: [[path, name, args...]], posted}.
"use strict";
const fs = require("fs");
const vm = require("vm");

function embeddedScript(path) {
    const data = fs.readFileSync(path);
    let at = 0;
    while (at + 8 <= data.length) {
        const name = data.toString("ascii", at, at + 4);
        const size = data.readUInt32LE(at + 4);
        const body = data.subarray(at + 8, at + 8 + size);
        if (name === "ptch") {
            const text = body.toString("utf8").replace(/\0+$/, "");
            const patcher = JSON.parse(text).patcher;
            const boxes = patcher.boxes.map((b) => b.box)
                .filter((b) => b.textfile && b.textfile.embed === 1 && /^v8\b/.test(b.text));
            if (boxes.length !== 1) {
                throw new Error("expected one [v8] with embedded code, found " + boxes.length);
            }
            return boxes[0].textfile.text;
        }
        at += 8 + size;
    }
    throw new Error("no ptch chunk");
}

const [amxd] = process.argv.slice(2);
const source = embeddedScript(amxd);
const scenario = JSON.parse(fs.readFileSync(0, "utf8"));
const objects = scenario.objects;
const calls = [];
const outlets = [];
const posted = [];
const globals = {};
let nextId = 1000;
objects["live_app"] = { id: 1, props: {}, counts: {} };
if (!objects["live_set"]) {
    objects["live_set"] = { id: 2, props: {}, counts: {} };
}

function insertTrack(index) {
    const moved = {};
    for (const key of Object.keys(objects)) {
        const match = /^live_set tracks (\d+)(.*)$/.exec(key);
        if (match && Number(match[1]) >= index) {
            moved["live_set tracks " + (Number(match[1]) + 1) + match[2]] = objects[key];
            delete objects[key];
        }
    }
    Object.assign(objects, moved);
    const slots = scenario.new_track_slots || 4;
    objects["live_set tracks " + index] = {
        id: nextId++, counts: { clip_slots: slots, arrangement_clips: 0 },
        props: { name: "Audio", has_audio_input: 1, is_foldable: 0, is_frozen: 0 },
    };
    for (let i = 0; i < slots; i++) {
        objects["live_set tracks " + index + " clip_slots " + i] = {
            id: nextId++, counts: {}, props: { has_clip: 0 },
        };
    }
    // the devices' own paths move with their track
    for (const copy of copies) {
        const match = /^live_set tracks (\d+)(.*)$/.exec(copy.device);
        if (match && Number(match[1]) >= index) {
            copy.device = "live_set tracks " + (Number(match[1]) + 1) + match[2];
            const parent = /^live_set tracks (\d+)(.*)$/.exec(copy.parent);
            copy.parent = "live_set tracks " + (Number(parent[1]) + 1) + parent[2];
        }
    }
}

function makeLiveAPI(copy) {
    return class LiveAPI {
        constructor(path) {
            const aliases = {
                "this_device": copy.device,
                "this_device canonical_parent": copy.parent,
                "live_set view selected_scene": scenario.selected_scene,
            };
            const canonical = aliases[path] !== undefined ? aliases[path] : path;
            this.unquotedpath = canonical;
            this.path = '"' + canonical + '"';
            this.object = objects[canonical];
            this.id = this.object ? String(this.object.id) : "0";
        }
        get(property) {
            if (!this.object) { return [0]; }
            return [this.object.props[property]];
        }
        set(property, value) {
            calls.push([this.unquotedpath, "set", property, value]);
            this.object.props[property] = value;
        }
        getcount(property) {
            return this.object ? this.object.counts[property] || 0 : 0;
        }
        call(name, ...args) {
            calls.push([this.unquotedpath, name, ...args]);
            if (this.unquotedpath === "live_app") {
                const index = ["get_major_version", "get_minor_version", "get_bugfix_version"]
                    .indexOf(name);
                return scenario.version[index];
            }
            if (name === "create_audio_track") {
                insertTrack(Number(args[0]));
                return undefined;
            }
            if (name === "create_audio_clip" && !scenario.refuse) {
                if (/clip_slots \d+$/.test(this.unquotedpath)) {
                    this.object.props.has_clip = 1;
                } else {
                    this.object.counts.arrangement_clips =
                        (this.object.counts.arrangement_clips || 0) + 1;
                }
            }
            return undefined;
        }
    };
}

class Global {
    constructor(name) {
        if (!globals[name]) { globals[name] = {}; }
        return globals[name];
    }
}

class Folder {
    constructor(path) {
        this.files = fs.readdirSync(path).sort();
        this.index = 0;
        this.typelist = [];
        this.sync();
    }
    sync() {
        this.end = this.index >= this.files.length;
        this.filename = this.end ? "" : this.files[this.index];
    }
    next() { this.index += 1; this.sync(); }
    close() {}
}

class File {
    constructor(path) {
        try {
            this.data = fs.readFileSync(path);
            this.isopen = true;
        } catch (error) {
            this.isopen = false;
        }
        this.position = 0;
    }
    readbytes(count) {
        const bytes = Array.from(this.data.subarray(this.position, this.position + count));
        this.position += bytes.length;
        return bytes;
    }
    close() { this.isopen = false; }
}

const count = scenario.copies || 1;
const devices = [].concat(scenario.this_device);
const parents = [].concat(scenario.parent);
const copies = [];
for (let i = 0; i < count; i++) {
    const copy = { device: devices[i % devices.length], parent: parents[i % parents.length] };
    const context = {
        LiveAPI: makeLiveAPI(copy), Global, Folder, File, Math, String, Number, Array, JSON,
        post: (text) => posted.push(text),
        outlet: (index, message) => outlets.push([i, index, ...[].concat(message)]),
        arrayfromargs: (args) => Array.prototype.slice.call(args),
    };
    vm.createContext(context);
    vm.runInContext(source, context, { filename: "dreamsampler.amxd:v8" });
    copy.context = context;
    copies.push(copy);
}
for (const [copy, name, ...args] of scenario.messages) {
    const fn = copies[copy].context[name];
    if (typeof fn !== "function") {
        throw new Error("the script has no function " + name);
    }
    fn(...args);
}
process.stdout.write(JSON.stringify({ outlets, calls, posted }));
