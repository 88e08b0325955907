// Runs max_patches/dreamsampler-clip.js under node against a small fake Live Object Model.
//
// Live cannot run on the test machines, so this fake stands in for Max's LiveAPI (a justified
// mock): objects are looked up by canonical path in a scenario read from stdin, get() answers
// arrays as Max does, path is quoted as in Max, and ClipSlot.create_audio_clip fills the slot
// unless the scenario says Live refuses. Usage: node fake_lom.js <script> <clip path> < scenario
"use strict";
const fs = require("fs");

const [script, clipPath] = process.argv.slice(2);
const scenario = JSON.parse(fs.readFileSync(0, "utf8"));
const objects = scenario.objects;
const calls = [];
const outlets = [];
const posted = [];

const aliases = {
    "this_device": scenario.this_device,
    "this_device canonical_parent": scenario.parent,
    "live_set view selected_scene": scenario.selected_scene,
};

class LiveAPI {
    constructor(path) {
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
    getcount(property) {
        return this.object ? this.object.counts[property] : 0;
    }
    call(name, ...args) {
        calls.push([this.unquotedpath, name, ...args]);
        if (this.unquotedpath === "live_app") {
            const index = ["get_major_version", "get_minor_version", "get_bugfix_version"]
                .indexOf(name);
            return scenario.version[index];
        }
        if (name === "create_audio_clip" && !scenario.refuse) {
            this.object.props.has_clip = 1;
        }
        return undefined;
    }
}

global.LiveAPI = LiveAPI;
global.outlet = (index, ...message) => outlets.push([index, ...message.flat()]);
global.post = (text) => posted.push(text);
global.arrayfromargs = (args) => Array.prototype.slice.call(args);
objects["live_app"] = { id: 1, props: {}, counts: {} };

const clip = require(script);
clip.place(...clipPath.split(" "));
process.stdout.write(JSON.stringify({ outlets, calls, posted }));
