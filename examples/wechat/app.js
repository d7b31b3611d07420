// Parley mini-program: app-wide settings. The chat page reads them from
// getApp().globalData.
//
// url:  the gateway (or the load balancer in front of the gateways). The
//       simulator can use ws://localhost:8080/ws with "urlCheck" off; a
//       released mini-program must use wss:// on a domain listed in the
//       mini-program's admin console, so put TLS in front of Parley.
// room: the room the chat page joins unless the page is opened with ?room=.
// user: the name sent in hello. The compose cluster runs with dev auth, which
//       trusts this name; with real auth, fetch a JWT from your backend after
//       wx.login and pass it as `token` instead.
App({
  globalData: {
    url: 'ws://localhost:8080/ws',
    room: 'chat',
    user: ''
  },

  onLaunch: function () {
    var user = wx.getStorageSync('parley-user');
    if (!user) {
      user = 'wx-' + Math.random().toString(36).slice(2, 8);
      wx.setStorageSync('parley-user', user);
    }
    this.globalData.user = user;
  }
});
