const express = require("express");

const app = express();
const port = process.env.PORT || 5006;

app.get("/", (req, res) => {
  res.type("text/plain").send(`node ${process.version} dyno ${process.env.DYNO || "-"}\n`);
});

app.listen(port, () => {
  console.log(`Listening on ${port}`);
});
