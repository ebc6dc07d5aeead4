import { createApp } from "vue";
import App from "./App.vue";
import "./style.css";
import "./messageActions"; // reactions, forwards, pins and views: it registers itself with the store

createApp(App).mount("#app");
