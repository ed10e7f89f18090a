// API reference: "Try it" with a pasted test key, and the webhook signature verifier.
(function () {
  "use strict";
  var keyInput = document.getElementById("docs-key");
  var keyMessage = document.getElementById("docs-key-message");
  keyInput.value = sessionStorage.getItem("sellix-docs-key") || "";
  keyInput.addEventListener("input", function () {
    sessionStorage.setItem("sellix-docs-key", keyInput.value.trim());
  });

  function refuse(text) {
    keyMessage.textContent = text;
    keyMessage.hidden = false;
    return null;
  }

  function testKey() {
    var key = keyInput.value.trim();
    keyMessage.hidden = true;
    if (key.indexOf("sx_live_") === 0) {
      return refuse("Try it only runs against the sandbox: paste an sx_test_ key, never a live one.");
    }
    if (key.indexOf("sx_test_") !== 0) { return refuse("Paste an sx_test_ key first."); }
    return key;
  }

  // crypto.randomUUID exists only on secure pages (https, localhost); this works anywhere.
  function randomKey() {
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    return "docs-" + Array.prototype.map.call(bytes, function (b) { return b.toString(16); }).join("");
  }

  function buildUrl(endpoint) {
    var path = endpoint.dataset.path, query = [];
    endpoint.querySelectorAll("input.param").forEach(function (input) {
      var value = input.value.trim();
      if (input.dataset.in === "path") {
        path = path.replace("{" + input.dataset.name + "}", encodeURIComponent(value));
      } else if (value) {
        query.push(encodeURIComponent(input.dataset.name) + "=" + encodeURIComponent(value));
      }
    });
    return path + (query.length ? "?" + query.join("&") : "");
  }

  function show(endpoint, status, headers, body) {
    var result = endpoint.querySelector(".result");
    result.hidden = false;
    result.querySelector(".result-status").textContent = status;
    result.querySelector(".result-headers").textContent = headers;
    result.querySelector(".result-body").textContent = body;
  }

  function tryIt(endpoint) {
    var key = testKey();
    if (!key) { return; }
    var method = endpoint.dataset.method;
    var headers = { "Authorization": "Bearer " + key };
    var options = { method: method, headers: headers };
    var body = endpoint.querySelector("textarea.body");
    if (body) {
      headers["Content-Type"] = "application/json";
      options.body = body.value;
    }
    if (method !== "GET") { headers["Idempotency-Key"] = randomKey(); }
    fetch(buildUrl(endpoint), options).then(function (response) {
      var lines = [];
      response.headers.forEach(function (value, name) { lines.push(name + ": " + value); });
      return response.text().then(function (text) {
        var pretty = text;
        try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
        show(endpoint, response.status + " " + response.statusText, lines.join("\n"), pretty);
      });
    }).catch(function (error) { show(endpoint, "network error", "", String(error)); });
  }

  document.querySelectorAll("article.endpoint button.try").forEach(function (button) {
    button.addEventListener("click", function () { tryIt(button.closest("article.endpoint")); });
  });

  function base64(bytes) { return btoa(String.fromCharCode.apply(null, bytes)); }
  function hex(bytes) {
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  var verifier = document.getElementById("webhook-verifier");
  verifier.addEventListener("submit", function (event) {
    event.preventDefault();
    var form = new FormData(verifier);
    var secret = String(form.get("secret")).trim().replace(/^whsec_/, "");
    var payload = String(form.get("payload")), id = String(form.get("message_id")).trim();
    var timestamp = String(form.get("timestamp")).trim();
    var encoder = new TextEncoder(), keyBytes;
    if (!crypto.subtle) {
      document.getElementById("verifier-verdict").textContent =
        "This browser only computes signatures on secure pages: open the reference over https or localhost.";
      verifier.nextElementSibling.hidden = false;
      return;
    }
    try {
      keyBytes = Uint8Array.from(atob(secret), function (c) { return c.charCodeAt(0); });
    } catch (e) {
      document.getElementById("verifier-verdict").textContent = "The secret is not valid base64.";
      verifier.nextElementSibling.hidden = false;
      return;
    }
    crypto.subtle.importKey("raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"])
      .then(function (key) {
        return Promise.all([
          crypto.subtle.sign("HMAC", key, encoder.encode(id + "." + timestamp + "." + payload)),
          crypto.subtle.sign("HMAC", key, encoder.encode(timestamp + "." + payload))
        ]);
      }).then(function (macs) {
        var standard = "v1," + base64(new Uint8Array(macs[0]));
        document.getElementById("verifier-standard").textContent = standard;
        document.getElementById("verifier-sellix").textContent = "sha256=" + hex(new Uint8Array(macs[1]));
        var received = String(form.get("received")).trim();
        document.getElementById("verifier-verdict").textContent = !received ? "—"
          : received.split(" ").indexOf(standard) >= 0 ? "Signature matches." : "Signature does NOT match.";
        verifier.nextElementSibling.hidden = false;
      });
  });
}());
